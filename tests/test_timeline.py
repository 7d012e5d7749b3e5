"""The start-up timeline: marks in the driver and in Ray's workers, written only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.execution import timeline
from testkit import synthetic


def test_marks_are_appended_as_json_lines_only_when_the_variable_names_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.jsonl"
    monkeypatch.delenv(timeline.TRACE_ENV, raising=False)
    timeline.mark(timeline.IMPORTED)
    assert not trace.exists()
    monkeypatch.setenv(timeline.TRACE_ENV, str(trace))
    timeline.mark(timeline.IMPORTED)
    timeline.mark(timeline.LISTED)
    marks = timeline.read_marks(str(trace))
    assert [m["mark"] for m in marks] == [timeline.IMPORTED, timeline.LISTED]
    assert {m["pid"] for m in marks} == {os.getpid()}
    assert marks[0]["t"] <= marks[1]["t"]


@pytest.mark.slow
def test_a_run_marks_every_step_in_order_from_the_driver_and_the_actors(tmp_path: Path) -> None:
    # A run of its own (fresh process, embedded Ray started by the run): the variable must reach
    # the workers that Ray starts for it.
    source = tmp_path / "src"
    source.mkdir()
    synthetic.write_clip(source / "a.mp4", synthetic.simple_spec([30, 30], "cut", width=160, height=96))
    trace = tmp_path / "trace.jsonl"
    env = {**os.environ, timeline.TRACE_ENV: str(trace)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(source), "--index", str(tmp_path / "idx"), "--quiet"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    marks = timeline.read_marks(str(trace))
    first = {}
    for entry in marks:
        first.setdefault(entry["mark"], entry)
    assert set(first) == set(timeline.STEPS)
    driver = first[timeline.IMPORTED]["pid"]
    assert {first[s]["pid"] for s in (timeline.LISTED, timeline.RAY_STARTED, timeline.DONE)} == {driver}
    assert first[timeline.FIRST_FRAME_DECODED]["pid"] != driver and first[timeline.WEIGHTS_LOADED]["pid"] != driver
    in_order = [timeline.IMPORTED, timeline.LISTED, timeline.RAY_STARTED, timeline.ACTOR_UP,
                timeline.FIRST_FRAME_DECODED, timeline.FIRST_VIDEO_COMMITTED, timeline.DONE]
    times = [first[s]["t"] for s in in_order]
    assert times == sorted(times)


def test_the_driver_of_a_run_imports_no_torch() -> None:
    # Planning, stitching and recording the weights' digests need no network: only the actors load torch.
    code = textwrap.dedent(
        """
        import sys
        from pipeline.config import Config
        from pipeline import digests
        from pipeline.execution import runner, stages
        digests.versions(Config())
        stages.PlanStage(Config())
        print("torch" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
