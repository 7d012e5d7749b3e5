"""Process trees on Linux, from /proc: to measure a run's memory or stop what it started by PID."""

from __future__ import annotations

import os
from typing import Any


def descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (children, grandchildren, ...), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid``: shared pages divided among the processes using them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_libc: Any = None


def release_free_heap() -> None:
    """Hand freed heap memory back to the OS: Arrow's memory pool, then glibc's ``malloc_trim``.

    Long-lived workers that allocate and free large, differently sized buffers (decoded
    frames, network activations, Arrow tables of segments) otherwise keep the freed pages, and
    their resident memory grows with the length of the corpus instead of staying at its
    working set. Arrow allocates from its own pool (mimalloc or jemalloc), which
    ``malloc_trim`` does not reach.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
