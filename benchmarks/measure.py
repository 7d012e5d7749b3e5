"""Shared measuring helpers for the benchmark scripts: peak memory of a process tree, cached clips."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import synthetic
from pipeline.processes import descendants, pss_bytes

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vindex" / "bench"


def tree_rss_bytes(root: int) -> int:
    """Memory of ``root`` and all of its descendants (driver, Ray services, workers).

    Summed as PSS, so the object store's shared pages count once, not once per process.
    """
    return sum(pss_bytes(pid) for pid in [root, *descendants(root)])


class PeakRSS:
    """Samples the process tree's RSS in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))


def measure(fn: Callable[[], int]) -> tuple[int, float, int]:
    """(frames, seconds, peak RSS bytes) of ``fn``, which returns the frames it handled."""
    with PeakRSS() as rss:
        started = time.perf_counter()
        frames = fn()
        seconds = time.perf_counter() - started
    return frames, seconds, rss.peak


def long_clip(minutes: float, height: int = 480) -> Path:
    """A folder holding one generated clip of ``minutes`` at 16:9 ``height``p, cached between runs."""
    width = round(height * 16 / 9 / 2) * 2  # 480 -> 854
    folder = CACHE / f"long_{minutes:g}min_{height}p"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "long.mp4"
    if not path.exists():
        spec = synthetic.spec_for_duration(42, minutes * 60, width=width, height=height, fps=25.0)
        started = time.perf_counter()
        tmp = folder / ".long.tmp.mp4"
        synthetic.write_clip(tmp, spec, preset="ultrafast", crf=23)
        tmp.rename(path)
        print(f"generated {path} ({spec.num_frames} frames) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder
