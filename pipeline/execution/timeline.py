"""Start-up timeline of a run: when it reached each step, in the driver and in Ray's workers.

Each step calls :func:`mark`. It always logs ``reached <step>`` at DEBUG; with the
environment variable ``VINDEX_TRACE`` set to a file path, it also appends one JSON line
``{"mark": step, "t": unix seconds, "pid": process}`` to that file. The variable travels to
an embedded Ray's workers (they inherit the driver's environment), so one file holds the
driver's and the actors' marks on one clock; ``benchmarks/startup.py`` reads it. Unset, a
mark costs one dictionary lookup. Light: no Ray, torch or Arrow here.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger(__name__)

#: The environment variable naming the file that marks are appended to.
TRACE_ENV = "VINDEX_TRACE"

#: The steps a ``vindex run`` marks, in the order a run reaches them.
IMPORTED = "imported"  # the command's modules are loaded; the run begins
LISTED = "listed"  # listing read and diffed against the index
RAY_STARTED = "ray started"
ACTOR_UP = "actor up"  # a stage actor's process runs vindex code
WEIGHTS_LOADED = "weights loaded"
FIRST_FRAME_DECODED = "first frame decoded"  # a worker's first segment decoded
FIRST_VIDEO_COMMITTED = "first video committed"
DONE = "done"
STEPS = (IMPORTED, LISTED, RAY_STARTED, ACTOR_UP, WEIGHTS_LOADED, FIRST_FRAME_DECODED, FIRST_VIDEO_COMMITTED, DONE)


def mark(step: str) -> None:
    """Record that this process reached ``step`` now (see the module's docstring)."""
    now = time.time()
    log.debug("reached %s", step)
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = json.dumps({"mark": step, "t": now, "pid": os.getpid()}) + "\n"
    # One write of a short line in append mode: lines from several processes never interleave.
    with open(path, "a", encoding="utf-8") as trace:
        trace.write(line)


def read_marks(path: str) -> list[dict[str, float | str | int]]:
    """The marks appended to ``path``, in the order they were written."""
    with open(path, encoding="utf-8") as trace:
        return [json.loads(line) for line in trace if line.strip()]


__all__ = [
    "ACTOR_UP",
    "DONE",
    "FIRST_FRAME_DECODED",
    "FIRST_VIDEO_COMMITTED",
    "IMPORTED",
    "LISTED",
    "RAY_STARTED",
    "STEPS",
    "TRACE_ENV",
    "WEIGHTS_LOADED",
    "mark",
    "read_marks",
]
