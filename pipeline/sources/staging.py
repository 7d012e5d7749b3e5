"""Where Ray's workers read a video from, when the driver's location is not theirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from pipeline.sources.listing import VideoObject
from pipeline.sources.reading import PROCESS_LOCAL_PROTOCOLS, open_input, protocol_of


@contextlib.contextmanager
def worker_readable(todo: list[VideoObject], storage_options: dict[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
    """Listing rows whose ``location`` Ray workers can read.

    Objects of a process-local filesystem (memory://) exist only in the driver, so they are
    copied to a local temporary folder for the run; everything else is read where it is.
    """
    rows = [v.to_row() for v in todo]
    if not rows or protocol_of(rows[0]["uri"]) not in PROCESS_LOCAL_PROTOCOLS:
        yield rows
        return
    with tempfile.TemporaryDirectory(prefix="vindex-staged-") as folder:
        for row in rows:
            target = os.path.join(folder, row["video_id"] + os.path.splitext(row["uri"])[1])
            with open_input(row["uri"], storage_options) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            row["location"] = target
        yield rows


__all__ = ["worker_readable"]
