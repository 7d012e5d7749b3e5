"""A small progress display for runs: videos and frames done, rate and ETA.

On a terminal it redraws one line on stderr; elsewhere it logs a line every
``interval_s`` seconds at INFO, so batch logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("pipeline.execution.progress")


class Progress:
    def __init__(self, total_videos: int, *, stream: TextIO | None = None, interval_s: float = 10.0) -> None:
        self.total_videos = total_videos
        self.videos_done = 0
        self.frames_done = 0
        self.started = time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.interval_s = interval_s if not self.interactive else 0.2
        self._last = 0.0

    def advance(self, *, frames: int = 0, videos: int = 0) -> None:
        self.frames_done += frames
        self.videos_done += videos
        now = time.monotonic()
        if now - self._last >= self.interval_s or self.videos_done == self.total_videos:
            self._last = now
            self._show(now)

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames_done / elapsed if elapsed > 0 else 0.0

    def _show(self, now: float) -> None:
        fps = self.fps
        elapsed = now - self.started
        remaining = self.total_videos - self.videos_done
        eta = f"{elapsed / self.videos_done * remaining:,.0f}s" if self.videos_done else "?"
        line = (
            f"videos {self.videos_done}/{self.total_videos}  frames {self.frames_done:,}"
            f"  {fps:,.0f} frames/s  eta {eta}"
        )
        if self.interactive:
            self.stream.write("\r" + line.ljust(78))
            self.stream.flush()
        else:
            log.info(line)

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
