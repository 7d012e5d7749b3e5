"""Stopping the process trees that tests and benchmarks start (``ray start`` nodes), by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from pipeline.execution.processes import descendants

#: How long a process tree has to exit after SIGTERM before what is left gets SIGKILL.
STOP_GRACE_S = 5.0


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each of ``pids`` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_tree(root: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``root`` and every process below it; SIGKILL what is left after ``grace_s``."""
    victims = [root.pid, *descendants(root.pid)]
    signal_all(victims, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(running(pid) for pid in victims):
        time.sleep(0.1)
    signal_all([root.pid, *descendants(root.pid), *victims], signal.SIGKILL)
    root.wait()


def run_together(
    commands: Sequence[Sequence[str]], timeout_s: float, *, poll: Callable[[], object] | None = None, poll_s: float = 0.5
) -> list[tuple[int, str]]:
    """Run ``commands`` at once; each one's exit status and output (stdout and stderr).

    ``poll`` is called every ``poll_s`` while any runs (e.g. a reader checking the index);
    past ``timeout_s`` the test fails and what still runs is killed.
    """
    started = [subprocess.Popen(list(c), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    try:
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in started):
            assert time.monotonic() < deadline, f"{len(started)} commands did not finish within {timeout_s:.0f} s"
            if poll is not None:
                poll()
            time.sleep(poll_s)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
    return [(p.wait(), p.communicate()[0]) for p in started]


__all__ = ["STOP_GRACE_S", "run_together", "running", "signal_all", "stop_tree"]
