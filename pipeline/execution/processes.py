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


#: Linux's switch for grouping CPU time by session ("autogroups"), and this process's group.
AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"
AUTOGROUP_SELF = "/proc/self/autogroup"


def autogroups_on() -> bool:
    """Whether this Linux kernel shares CPU time between sessions (``CONFIG_SCHED_AUTOGROUP``, on)."""
    try:
        with open(AUTOGROUP_SWITCH) as f:
            return f.read().strip() == "1" and os.path.exists(AUTOGROUP_SELF)
    except OSError:
        return False


def background_cpu_group() -> str:
    """Give this process a CPU scheduling group of its own at its own niceness, where Linux
    shares CPU time between sessions rather than processes; returns what was done, in words.

    Ray starts its workers at a positive niceness (15) so that the node's own processes and a
    job's driver come first on a busy core. With autogroups on (the default of most Linux
    kernels), niceness counts only inside a session, and CPU time is shared between
    sessions: a job's driver, started in a session of its own, then competes at best as an
    equal with the session of every worker of the node. On a core shared with a model actor
    the driver's threads, runnable, got about 1% of the core for 10-20 s at a time, and no
    actor got new work meanwhile. A session of its
    own, niced as the worker is, puts the actor back behind the driver and the node's
    processes, as Ray meant it to be.
    """
    if not autogroups_on():
        return "autogroups off"
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness <= 0:
        return f"niceness {niceness}: left in its group"
    if not os.access(AUTOGROUP_SELF, os.W_OK):  # a group of its own it could not nice would come first
        return "left in its group (its group's niceness cannot be set)"
    leader = os.getpgid(0) == os.getpid()
    try:
        if leader:
            # A process-group leader (Ray starts each worker as one) cannot start a session:
            # it steps into its parent's group first, in the same session. The new session
            # makes it a group leader again, under the same number.
            os.setpgid(0, os.getpgid(os.getppid()))
        os.setsid()
    except OSError as e:
        if leader and os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)  # back to a group of its own
        return f"left in its group ({e})"
    try:
        with open(AUTOGROUP_SELF, "w") as f:
            f.write(str(niceness))
    except OSError as e:
        return f"a group of its own, not niced ({e})"
    return f"own group at niceness {niceness}"
