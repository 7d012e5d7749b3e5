"""A video whose decoder kills its worker process fails alone; the run goes on.

The crash is real: a watcher SIGKILLs every decode actor process that opens the poisoned
file, as a segfault in native decoding code would end it. Ray restarts the actor and retries
the segment; after MAX_WORKER_DEATHS deaths the stage fails the video instead of retrying.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from pipeline.config import Config
from pipeline.index.store import Index
from pipeline.execution.runner import run_index
from pipeline.execution.adapter import StageActor
from pipeline.execution.stages import MAX_WORKER_DEATHS
from testkit import synthetic


def _actors_holding(path: str) -> list[int]:
    """PIDs of Ray actor-pool workers that have ``path`` open."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if StageActor.__name__.encode() not in f.read():
                    continue
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == path for fd in fds):
                found.append(int(pid))
        except OSError:
            continue  # gone meanwhile, or a descriptor closed while we looked
    return found


class CrashingDecoder:
    """Kills, like a segfault would, any decode worker that opens ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in _actors_holding(self.path):
                if pid not in self.killed:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            self._stop.wait(0.01)

    def __enter__(self) -> "CrashingDecoder":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_decoder_crash_fails_only_its_video(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    for i in range(2):
        spec = synthetic.simple_spec([30, 30], "cut", contents=[2 * i, 2 * i + 1], width=160, height=96, seed=40 + i)
        synthetic.write_clip(source / f"good{i}.mp4", spec)
    # Long enough to decode that the watcher sees it open.
    poison = source / "poison.mp4"
    synthetic.write_clip(poison, synthetic.simple_spec([400, 400], "cut", contents=[7, 8], width=640, height=360, seed=9))

    with CrashingDecoder(poison) as crash:
        summary = run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)
    assert len(crash.killed) == MAX_WORKER_DEATHS
    assert (summary.counts["ok"], summary.counts["failed"]) == (2, 1)
    videos = {Path(v["uri"]).name: v for v in Index(str(tmp_path / "idx")).read("videos").to_pylist()}
    assert sorted(videos) == ["good0.mp4", "good1.mp4", "poison.mp4"]
    assert (videos["poison.mp4"]["status"], videos["poison.mp4"]["error_stage"]) == ("failed", "decode")
    assert videos["poison.mp4"]["error_message"] == (
        f"the decode worker process died {MAX_WORKER_DEATHS} times on this video (a crash in native code, "
        "or killed for memory); skipped"
    )
    assert all(videos[f"good{i}.mp4"]["num_shots"] == 2 for i in range(2))
