"""What a run prints: vindex's own progress and summary, and Ray's lines only at DEBUG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import synthetic

REPOSITORY = Path(__file__).resolve().parents[1]
#: A line of vindex's own logging (pipeline.cli: "%(asctime)s %(levelname)s %(name)s: %(message)s").
VINDEX_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) pipeline(\.\w+)*: ")
#: Ray's own lines seen in a run's output before it was quieted (Ray 2.60).
RAY_LINES = (
    "core_worker.cc",  # the C++ core's E-line for each actor-pool actor
    "Progress bars disabled",  # Ray Data's warning
    "Token authentication",  # the warning when RAY_AUTH_MODE is not set
    "logging.cc",  # the C++ core announcing the level it read from the environment
    "execution finished",  # Ray Data's INFO line at the end of a dataset
)


def run(folder: Path, index: Path, home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``vindex run`` in a fresh process, as a user starts it: RAY_AUTH_MODE unset (its
    token goes under ``home``), no cluster address."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_BACKEND_LOG_LEVEL")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *options, "run", str(folder), "--index", str(index)],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("src")
    synthetic.write_clip(folder / "two_shots.mp4", synthetic.simple_spec([30, 30], "cut", width=160, height=96))
    return folder


def test_a_run_prints_only_vindex_lines_at_the_default_level(source: Path, tmp_path: Path) -> None:
    result = run(source, tmp_path / "idx", tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "1 videos ok, 0 failed" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(VINDEX_LINE.match(line) for line in lines), result.stderr
    assert [name for name in RAY_LINES if name in result.stderr + result.stdout] == []


def test_rays_lines_come_back_at_debug(source: Path, tmp_path: Path) -> None:
    result = run(source, tmp_path / "idx", tmp_path / "home", "--log-level", "DEBUG")
    assert result.returncode == 0, result.stderr
    for name in ("core_worker.cc", "Progress bars disabled", "Token authentication"):
        assert name in result.stderr, name
