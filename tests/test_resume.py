"""A driver killed with SIGKILL mid-run loses at most the batch in flight; the next run finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.index.store import Index
from pipeline.execution.processes import descendants
from pipeline.execution.runner import run_index
from testkit import synthetic


def kill_tree(pid: int) -> None:
    victims = [pid, *descendants(pid)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def committed(index_path: Path) -> int:
    index = Index(str(index_path))
    if not index.exists("videos"):
        return 0
    return index.read("videos", columns=["video_id"]).num_rows


@pytest.mark.slow
def test_resume_after_driver_sigkill(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, index_path = tmp_path / "src", tmp_path / "idx"
    source.mkdir()
    for i in range(6):
        spec = synthetic.simple_spec([40, 40], "cut", contents=[2 * i, 2 * i + 1], width=160, height=96, seed=i)
        synthetic.write_clip(source / f"clip{i}.mp4", spec)

    driver = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(source), "--index", str(index_path), "--quiet",
         "--set", "write.commit_every_videos=1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while committed(index_path) < 2:
            assert driver.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "no commit within 240 s"
            time.sleep(0.2)
    finally:
        kill_tree(driver.pid)
        driver.wait()
    done_before = committed(index_path)
    assert 2 <= done_before < 6

    summary = run_index(str(source), str(index_path), Config(), show_progress=False)
    assert summary.counts["unchanged"] == done_before
    assert summary.counts["new"] == 6 - done_before
    index = Index(str(index_path))
    video_ids = index.read("videos", columns=["video_id"]).column("video_id").to_pylist()
    assert len(video_ids) == len(set(video_ids)) == 6
    shots = [(s["video_id"], s["shot_index"]) for s in index.read("shots").to_pylist()]
    assert len(shots) == len(set(shots)) == 12
    runs = {r["status"] for r in index.read("runs").to_pylist()}
    assert runs == {"running", "ok"}  # the killed run stays visibly unfinished
