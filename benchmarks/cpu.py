"""CPU seconds of a tree of processes, per kind of process, sampled from /proc.

Ray runs a job as many processes (its servers, agents, helper actors, the pipeline's actors,
workers still starting), most of which are not children a parent waits for, so
``getrusage`` misses them. :class:`CpuSampler` reads every process under some roots a few
times a second and counts each one's CPU time in the group its command line names
(:func:`process_group`): ``ray::<actor>`` for Ray's workers, the binary's name for raylet and
the GCS, and so on.
"""

from __future__ import annotations

if not __package__:  # imported by a script run as a file: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import math
import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Self

from pipeline.execution.processes import descendants

#: How often the CPU sampler reads /proc: processes that live shorter than this between two
#: samples are missed (Ray's short-lived helper processes; the measured groups live for the job).
SAMPLE_INTERVAL_S = 0.5
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: The pipeline's actors (Ray Data's map workers) by process title.
PIPELINE_ACTOR_TITLE = "ray::MapWorker"
#: A thread counts as busy when it did this share of its process's CPU work: torch's intra-op
#: threads share a forward pass about evenly, Ray's own threads (gRPC, heartbeats) do far less.
BUSY_THREAD_SHARE = 0.05
#: Seconds per character of an actor's busy timeline.
TIMELINE_STEP_S = 2.0
#: Markers in a process's command line (the scripts Ray runs), checked in order, and the group
#: it is counted in. Ray's workers retitle themselves ``ray::<actor or task>``; binaries go by name.
GROUP_MARKERS = (
    ("jobs.index_corpus", "job driver (jobs.index_corpus)"),
    ("pipeline.cli", "vindex (the command)"),
    ("dashboard/agent.py", "dashboard agent"),
    ("runtime_env/agent", "runtime-env agent"),
    ("dashboard/dashboard.py", "dashboard (head)"),
    ("log_monitor.py", "log monitor"),
    ("autoscaler/_private/monitor.py", "autoscaler monitor"),
    ("default_worker.py", "ray worker, starting"),
)


#: Binaries counted by their own name.
BINARIES = ("raylet", "gcs_server")


def process_group(argv: list[str]) -> str:
    """The group a process's CPU time is counted in, from its command line."""
    line = " ".join(argv)
    first = line.split()[0] if line.strip() else "?"
    name = Path(first).name
    if first.startswith("ray::"):
        return re.sub(r"\.\w+$", "", first)[:60]  # an actor's title ends in the method it runs: ".submit"
    if name in BINARIES:
        return name
    # Only the interpreter's first arguments (script or -m module): the raylet's and the GCS's
    # own arguments name the agents' scripts.
    head = " ".join(argv[:3])
    for marker, group in GROUP_MARKERS:
        if marker in head:
            return group
    if name == "ray" or (len(argv) > 1 and Path(argv[1]).name == "ray" and "start" in argv):
        return "ray start --block"
    if name.startswith("python") and " -c " in f"{head} ":
        return "python -c (Ray helpers)"
    return name


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU ticks of ``pid``; None once it has ended."""
    return _cpu_ticks_at(f"/proc/{pid}/stat")


def _cpu_ticks_at(stat_path: str) -> int | None:
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, IndexError, ValueError):
        return None


def _thread_ticks(pid: int) -> dict[int, int]:
    """User + system CPU ticks of each thread of ``pid``."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        ticks = _cpu_ticks_at(f"/proc/{pid}/task/{tid}/stat")
        if ticks is not None:
            out[int(tid)] = ticks
    return out


def _machine_busy_ticks() -> int:
    """Busy CPU ticks of the whole machine since boot, every core (all of /proc/stat but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values[:8]) - values[3] - values[4]  # user..steal, less idle and iowait


def pipeline_actors_under(roots: list[int]) -> list[int]:
    """The pipeline actor processes (:data:`PIPELINE_ACTOR_TITLE`) under ``roots``, alive now."""
    return [pid for root in roots for pid in descendants(root) if process_group(_cmdline(pid)).startswith(PIPELINE_ACTOR_TITLE)]


class CpuSampler:
    """CPU seconds per process group under some roots, sampled from /proc in a thread.

    A process alive at ``start()`` counts from its ticks then; one started later from zero.
    Ticks a process spends after the last sample before it ends are missed.
    """

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self._baseline: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._group: dict[int, str] = {}
        self._threads: dict[int, dict[int, int]] = {}
        #: Per pipeline actor, (seconds since start(), CPU ticks) at each sample.
        self._history: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._machine_start = 0
        self._own_start = 0
        self.machine_s = 0.0
        self.sampler_s = 0.0

    def _tree(self) -> list[int]:
        pids = []
        for root in self.roots:
            pids += [root, *descendants(root)]
        return pids

    def _sample(self) -> None:
        for pid in self._tree():
            ticks = _cpu_ticks(pid)
            if ticks is None:
                continue
            # A worker retitles itself once it runs an actor: its time goes to its latest title.
            argv = _cmdline(pid)
            if argv or pid not in self._group:
                self._group[pid] = process_group(argv)
            self._last[pid] = ticks
            if self._group[pid].startswith(PIPELINE_ACTOR_TITLE):
                self._threads[pid] = _thread_ticks(pid) or self._threads.get(pid, {})
                self._history[pid].append((time.perf_counter() - self._started, ticks))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        for pid in self._tree():
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                self._baseline[pid] = ticks
        self._sample()
        self._machine_start = _machine_busy_ticks()
        self._own_start = _cpu_ticks(os.getpid()) or 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.machine_s = (_machine_busy_ticks() - self._machine_start) / CLOCK_TICKS_PER_S
        self.sampler_s = ((_cpu_ticks(os.getpid()) or 0) - self._own_start) / CLOCK_TICKS_PER_S

    def actor_cpu_s(self) -> list[float]:
        """CPU seconds of each pipeline actor (an actor that never got work shows near 0)."""
        return [
            (self._last[pid] - self._baseline.get(pid, 0)) / CLOCK_TICKS_PER_S
            for pid, group in self._group.items()
            if group.startswith(PIPELINE_ACTOR_TITLE) and pid in self._last
        ]

    def actor_timelines(self) -> list[str]:
        """Per pipeline actor, one character per TIMELINE_STEP_S since the job was submitted: how
        much of a core it used then (' ' none, '.' under a quarter, ':' under a half, '+' under
        three quarters, '#' more). Shows whether the actors worked at the same time."""
        out = []
        for history in self._history.values():
            if not history:
                continue
            steps = int(history[-1][0] // TIMELINE_STEP_S) + 1
            used = [0.0] * steps
            for (t0, a), (_, b) in zip(history, history[1:]):
                used[int(t0 // TIMELINE_STEP_S)] += (b - a) / CLOCK_TICKS_PER_S
            out.append("".join(" .:+#"[min(4, math.ceil(4 * u / TIMELINE_STEP_S))] for u in used))
        return out

    def busy_threads(self) -> list[int]:
        """Per pipeline actor, its threads that did at least BUSY_THREAD_SHARE of its work."""
        out = []
        for threads in self._threads.values():
            total = sum(threads.values())
            if total:
                out.append(sum(ticks >= BUSY_THREAD_SHARE * total for ticks in threads.values()))
        return out

    def by_group(self) -> dict[str, float]:
        """CPU seconds per group since ``start()``."""
        out: dict[str, float] = defaultdict(float)
        for pid, ticks in self._last.items():
            out[self._group[pid]] += (ticks - self._baseline.get(pid, 0)) / CLOCK_TICKS_PER_S
        return dict(out)

    def processes(self) -> dict[str, int]:
        """How many processes each group counted (a worker counts under its latest title)."""
        out: dict[str, int] = defaultdict(int)
        for pid in self._last:
            out[self._group[pid]] += 1
        return dict(out)
