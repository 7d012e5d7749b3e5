"""Scaling from one Ray node to two: the same job through `vindex submit`, frames/s of each.

    python benchmarks/scaling.py [--minutes 4] [--rounds 1] [--threads 1] [--quick]

One generated 480p clip (``measure.long_clip``) is indexed by ``vindex submit --wait`` on

* (a) one ``ray start --head --num-cpus=1`` node, and
* (b) that head plus one ``ray start --num-cpus=1`` worker node,

each a fresh cluster started for the measurement and stopped by PID afterwards (even on
failure or Ctrl-C). Each node is pinned to a core of its own with ``taskset`` (node i on
core i; ``--no-pin`` to turn it off), as real 1-CPU nodes would be: unpinned, the one-node
cluster borrowed the idle second core (its actor took 69 CPU-s in a 62 s run, one thread
decoding beside the network's). Both nodes run on this machine, inside a network namespace of their own
whose only interface is loopback (head 127.0.0.2, worker 127.0.0.3: ``testkit.cluster``, as
``tests/test_cluster.py`` has them), so nothing listens outside. Needs root and ``unshare --net``.

Printed for each: frames/s over the wall time of ``vindex submit --wait`` (job submission,
runtime environment, driver and actor start-up included) and the run's own frames/s (the
job's summary line), the ratio of (b) to (a) (target >= 1.6x), and the CPU seconds each group
of processes took while the job ran (raylet, GCS, dashboard, agents, job driver, each kind
of worker, the submitting client), sampled from /proc, plus what processes outside the
cluster took of the machine meanwhile. A machine shared with other work gives ratios that
hold better than the absolute figures; with --rounds > 1 the two shapes alternate. Also
printed: the job's pool plan and the CPU seconds of each pipeline actor, which show whether
the second node's actor did any work (a NOTE says when it did not), and each actor's core use
over time, a character per 2 s, which shows whether the actors worked at the same time.

Torch threads: the model stage runs ``compute.model_threads`` threads, and 0 (the default)
means the CPUs Ray gave the actor, rounded up. The job is still submitted with
``compute.model_threads`` and ``decode.threads`` set to --threads (default 1, a 1-CPU node's
share), so the two shapes run the same threads whatever the pool plan; the threads each model
actor reported are read back from the job's log.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from benchmarks.measure import CACHE, long_clip, machine_header

from pipeline.execution.processes import descendants
from testkit import synthetic
from testkit.cluster import LoopbackCluster, loopback_cluster, namespaces_available

#: CPUs of each node (testkit.cluster's default).
NODE_CPUS = 1
#: A measured job must end within this (a 4-minute clip at ~20 frames/s on one CPU: ~5 min).
JOB_TIMEOUT_S = 3600.0
#: How often the CPU sampler reads /proc: processes that live shorter than this between two
#: samples are missed (Ray's short-lived helper processes; the measured groups live for the job).
SAMPLE_INTERVAL_S = 0.5
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: The pipeline's actors (Ray Data's map workers) by process title.
PIPELINE_ACTOR_TITLE = "ray::MapWorker"
#: A thread counts as busy when it did this share of its process's CPU work: torch's intra-op
#: threads share a forward pass about evenly, Ray's own threads (gRPC, heartbeats) do far less.
BUSY_THREAD_SHARE = 0.05
#: An actor with less CPU than this over the job did no segment's work (a 300-frame 480p
#: segment took ~3 CPU-s here).
ACTOR_WORKED_CPU_S = 1.0
#: Seconds per character of an actor's busy timeline.
TIMELINE_STEP_S = 2.0
#: The default clip length: 6,000 frames at 25 fps, four segments of the default 1,500 frames,
#: so two nodes split the work evenly (3 segments would cap the ratio at 1.5x).
DEFAULT_MINUTES = 4.0
#: --quick: a 24-second clip in two 300-frame segments.
QUICK_MINUTES, QUICK_SEGMENT_FRAMES = 0.4, 300
#: The warm-up job's clip: a few seconds, so the runtime environment (the shipped packages) is
#: set up on the nodes before the measured job.
WARMUP_SECONDS = 4.0

#: Markers in a process's command line (the scripts Ray runs), checked in order, and the group
#: it is counted in. Ray's workers retitle themselves ``ray::<actor or task>``; binaries go by name.
GROUP_MARKERS = (
    ("jobs.index_corpus", "job driver (jobs.index_corpus)"),
    ("pipeline.cli", "vindex submit (client)"),
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


def submit(cluster: LoopbackCluster, folder: Path, index: Path, settings: list[str]) -> subprocess.Popen[str]:
    """`vindex submit --wait` of ``folder``, running; its output in a pipe."""
    argv = cluster.vindex_argv("submit", str(folder), "--index", str(index), "--wait", *[a for s in settings for a in ("--set", s)])
    return subprocess.Popen(
        argv, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip


@dataclass
class JobResult:
    nodes: int
    frames: int
    wall_s: float
    run_fps: float
    cpu_s: dict[str, float]
    machine_cpu_s: float
    sampler_cpu_s: float
    model_threads: list[int]
    busy_threads: list[int]
    actor_cpu_s: list[float]
    pools: str
    actor_timelines: list[str] = field(default_factory=list)

    @property
    def wall_fps(self) -> float:
        return self.frames / self.wall_s


SUMMARY = re.compile(r"frames ([\d,]+) at ([\d,.]+) frames/s")
THREADS = re.compile(r"model stage on \S+ with (\d+) threads")


def run_job(cluster: LoopbackCluster, folder: Path, settings: list[str], nodes: int) -> JobResult:
    """One `vindex submit --wait`, timed, with the CPU of every process of the cluster sampled."""
    with tempfile.TemporaryDirectory(prefix="vindex-scaling-idx-") as index:
        started = time.perf_counter()
        client = submit(cluster, folder, Path(index) / "idx", settings)
        with CpuSampler([p.pid for p in cluster.node_processes] + [client.pid]) as sampler:
            try:
                output, _ = client.communicate(timeout=JOB_TIMEOUT_S)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        wall_s = time.perf_counter() - started
    if client.returncode != 0 or not (match := SUMMARY.search(output)):
        raise RuntimeError(f"the job failed (exit {client.returncode}):\n{output[-4000:]}")
    return JobResult(
        nodes=nodes,
        frames=int(match.group(1).replace(",", "")),
        wall_s=wall_s,
        run_fps=float(match.group(2).replace(",", "")),
        cpu_s=sampler.by_group(),
        machine_cpu_s=sampler.machine_s,
        sampler_cpu_s=sampler.sampler_s,
        model_threads=[int(t) for t in THREADS.findall(output)],
        busy_threads=sampler.busy_threads(),
        actor_cpu_s=sampler.actor_cpu_s(),
        actor_timelines=sampler.actor_timelines(),
        pools=next((line.strip() for line in output.splitlines() if "pools:" in line), "pools: not in the job's log"),
    )


def warmup_folder() -> Path:
    """A folder with one clip of WARMUP_SECONDS, cached."""
    folder = CACHE / "scaling_warmup"
    path = folder / "warmup.mp4"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        spec = synthetic.spec_for_duration(7, WARMUP_SECONDS, width=320, height=180)
        synthetic.write_clip(folder / ".warmup.tmp.mp4", spec, preset="ultrafast")
        (folder / ".warmup.tmp.mp4").rename(path)
    return folder


def print_results(results: list[JobResult]) -> None:
    print(f"\n{'nodes':>5} {'frames':>7} {'wall s':>7} {'wall fps':>8} {'run fps':>8}  threads per actor")
    for r in results:
        logged = ",".join(map(str, r.model_threads)) or "not in the job's log"
        busy = ",".join(map(str, r.busy_threads)) or "-"
        print(f"{r.nodes:>5} {r.frames:>7} {r.wall_s:>7.1f} {r.wall_fps:>8.1f} {r.run_fps:>8.1f}  "
              f"torch (logged): {logged}; busy threads seen in /proc: {busy}")  # fmt: skip
    for r in results:
        actors = ", ".join(f"{cpu_s:.1f}" for cpu_s in r.actor_cpu_s) or "none seen"
        print(f"{r.nodes} node(s): CPU seconds of each pipeline actor: {actors}; {r.pools}")
        for timeline in r.actor_timelines:
            print(f"  actor's core use, {TIMELINE_STEP_S:g} s a character from submission: |{timeline}|")
    one = [r for r in results if r.nodes == 1]
    two = [r for r in results if r.nodes == 2]
    for r in two:
        working = sum(cpu_s >= ACTOR_WORKED_CPU_S for cpu_s in r.actor_cpu_s)
        if working < 2:
            print(f"NOTE: with 2 nodes only {working} pipeline actor did work: the pool did not grow to its "
                  "max_size, so (b) measures one node's worth of actors")  # fmt: skip
    for a, b in zip(one, two):
        print(
            f"two nodes / one node: {b.wall_fps / a.wall_fps:.2f}x over the wall time of `vindex submit --wait`, "
            f"{b.run_fps / a.run_fps:.2f}x over the run's own time (target >= 1.6x)"
        )

    groups = sorted({g for r in results for g in r.cpu_s}, key=lambda g: -max(r.cpu_s.get(g, 0) for r in results))
    header = f"\n{'CPU seconds while the job ran':<62}" + "".join(f"{f'{r.nodes} node(s)':>11}" for r in results)
    print(header)
    for group in groups:
        print(f"{group:<62}" + "".join(f"{r.cpu_s.get(group, 0.0):>11.1f}" for r in results))
    print(f"{'  all of the cluster and the client':<62}" + "".join(f"{sum(r.cpu_s.values()):>11.1f}" for r in results))
    print(f"{'  this script (sampling /proc)':<62}" + "".join(f"{r.sampler_cpu_s:>11.1f}" for r in results))
    print(
        f"{'  other processes on the machine (not this benchmark)':<62}"
        + "".join(f"{max(0.0, r.machine_cpu_s - sum(r.cpu_s.values()) - r.sampler_cpu_s):>11.1f}" for r in results)
    )
    print(f"{'  machine busy, every core':<62}" + "".join(f"{r.machine_cpu_s:>11.1f}" for r in results))
    print(f"{'  wall seconds x cores':<62}" + "".join(f"{r.wall_s * (os.cpu_count() or 1):>11.1f}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="length of the generated 480p clip")
    parser.add_argument("--rounds", type=int, default=1, help="one node, then two, this many times")
    parser.add_argument("--threads", type=int, default=NODE_CPUS, help="torch and decode threads per actor")
    parser.add_argument("--segment-frames", type=int, help="decode.segment_frames (default: the config's)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up job on each cluster")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="let every node use every core (taskset off)")
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_MINUTES * 60:g}-second clip in two segments")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy each cluster's Ray logs (workers' too) here")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="more settings for the job")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.segment_frames = QUICK_MINUTES, args.segment_frames or QUICK_SEGMENT_FRAMES
    print(machine_header(), flush=True)
    if not namespaces_available():
        sys.exit("scaling.py needs root, `ray`, and `unshare --net` for a loopback-only network namespace")
    os.environ["RAY_AUTH_MODE"] = "disabled"

    # Any signal that ends the script ends it through the `finally` blocks that stop the nodes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = long_clip(args.minutes)
    settings = [
        f"compute.model_threads={args.threads}",
        f"decode.threads={args.threads}",
        *([f"decode.segment_frames={args.segment_frames}"] if args.segment_frames else []),
        *args.set,
    ]
    print(f"clip: {folder}; settings: {' '.join(settings)}; {os.cpu_count()} CPUs on this machine", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="vindex-scaling-") as logs:
        for _ in range(args.rounds):
            for nodes in (1, 2):
                keep = args.keep_logs / f"nodes-{nodes}" if args.keep_logs else None
                with loopback_cluster(nodes, Path(logs), pin=args.pin, keep_logs=keep) as cluster:
                    if args.warmup:
                        run_job(cluster, warmup_folder(), settings, nodes)
                    result = run_job(cluster, folder, settings, nodes)
                print(f"{nodes} node(s): {result.frames} frames in {result.wall_s:.1f} s", flush=True)
                results.append(result)
    print_results(results)


if __name__ == "__main__":
    main()
