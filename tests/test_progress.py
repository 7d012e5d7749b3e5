from __future__ import annotations

import io
import logging

import pytest

from pipeline.execution.progress import Progress


def test_logs_progress_lines_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    progress = Progress(2, stream=stream, interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="pipeline.execution.progress"):
        progress.advance(frames=100)
        progress.advance(videos=1)
        progress.advance(frames=50, videos=1)
        progress.close()
    assert stream.getvalue() == ""  # nothing drawn on a non-terminal
    last = caplog.records[-1].getMessage()
    assert last.startswith("videos 2/2  frames 150") and "frames/s" in last and "eta 0s" in last
    assert "eta ?" in caplog.records[0].getMessage()  # no finished video yet
