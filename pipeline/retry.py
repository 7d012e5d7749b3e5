"""One way to retry an operation: jittered exponential backoff.

Reading objects from storage (transient timeouts, 5xx, dropped connections) and committing to
the index (another writer committed first) both retry through :func:`retry`; each caller says
which errors are worth another attempt and how to log one.

Attempt ``k`` (0-based) that fails is followed by a pause of ``backoff_s * 2**k * (1 + u)``
with ``u`` uniform on ``[0, 1)``: the pause doubles each time, and the jitter keeps workers
that failed together (one store outage, one conflicting commit) from retrying in lockstep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Called before each pause with (the error, the 1-based number of the retry to come, the pause in s).
RetryHook = Callable[[BaseException, int, float], None]


def backoff_delay(attempt: int, backoff_s: float, jitter: float) -> float:
    """The pause (s) after failed attempt ``attempt`` (0-based), with ``jitter`` in ``[0, 1)``."""
    return backoff_s * 2.0**attempt * (1 + jitter)


def retry(
    action: Callable[[], T],
    *,
    attempts: int,
    backoff_s: float,
    retryable: Callable[[BaseException], bool],
    on_retry: RetryHook | None = None,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """``action()``, called up to ``attempts`` times while it raises an error ``retryable`` accepts.

    An error ``retryable`` refuses is raised at once; the last attempt's error is raised as it
    is, so callers map it to their own types. ``sleep`` and ``jitter`` are seams for tests
    (no real waiting, a fixed jitter).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts - 1 or not retryable(exc):
                raise
            delay = backoff_delay(attempt, backoff_s, jitter())
            if on_retry is not None:
                on_retry(exc, attempt + 1, delay)
            else:
                log.warning("%s; retry %d/%d in %.1f s", exc, attempt + 1, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
