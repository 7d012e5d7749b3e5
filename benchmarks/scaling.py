"""Scaling from one Ray node to two: the same job through `vindex submit`, frames/s of each.

    python benchmarks/scaling.py [--minutes 4] [--rounds 1] [--threads 1] [--quick] [--checkout DIR]

One generated 480p clip (``measure.long_clip``) is indexed by ``vindex submit --wait`` on

* (a) one ``ray start --head --num-cpus=1`` node, and
* (b) that head plus one ``ray start --num-cpus=1`` worker node,

each a fresh cluster started for the measurement and stopped by PID afterwards (even on
failure or Ctrl-C); ``--nodes 2`` runs one shape alone (to trace it). Each node is pinned to
a core of its own with ``taskset`` (node i on core i; ``--no-pin`` to turn it off), as real
1-CPU nodes would be: unpinned, the one-node
cluster borrowed the idle second core (its actor took 69 CPU-s in a 62 s run, one thread
decoding beside the network's). Both nodes run on this machine, inside a network namespace of their own
whose only interface is loopback (head 127.0.0.2, worker 127.0.0.3: ``testkit.cluster``, as
``tests/test_cluster.py`` has them), so nothing listens outside. Needs root and ``unshare --net``.

Printed for each: frames/s over the wall time of ``vindex submit --wait`` (job submission,
runtime environment, driver and actor start-up included) and the run's own frames/s (the
job's summary line), the ratio of (b) to (a) (target >= 1.8x), and the CPU seconds each group
of processes took while the job ran (raylet, GCS, dashboard, agents, job driver, each kind
of worker, the submitting client), sampled from /proc, plus what processes outside the
cluster took of the machine meanwhile. A machine shared with other work gives ratios that
hold better than the absolute figures; with --rounds > 1 the two shapes alternate. Also
printed: the job's pool plan and the CPU seconds of each pipeline actor, which show whether
the second node's actor did any work (a NOTE says when it did not), and each actor's core use
over time, a character per 2 s, which shows whether the actors worked at the same time.

``--checkout DIR`` runs another copy of the code (``git worktree add DIR REV``) on each cluster
as well, this copy and that one in turn (the order reversed every other round), each after a
warm-up job of its own: the submitting client imports that copy's ``pipeline`` and the job's
runtime environment ships it, so the nodes run it too. Each copy gets its own ratio line.

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
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cpu import TIMELINE_STEP_S, CpuSampler, pipeline_actors_under
from benchmarks.measure import CACHE, ROOT, long_clip, machine_header

from testkit import synthetic
from testkit.cluster import LoopbackCluster, loopback_cluster, namespaces_available

#: CPUs of each node (testkit.cluster's default).
NODE_CPUS = 1
#: A measured job must end within this (a 4-minute clip at ~20 frames/s on one CPU: ~5 min).
JOB_TIMEOUT_S = 3600.0
#: An actor with less CPU than this over the job did no segment's work (a 300-frame 480p
#: segment took ~3 CPU-s here).
ACTOR_WORKED_CPU_S = 1.0
#: The default clip length: 6,000 frames at 25 fps, four segments of the default 1,500 frames,
#: so two nodes split the work evenly (3 segments would cap the ratio at 1.5x).
DEFAULT_MINUTES = 4.0
#: --quick: a 24-second clip in two 300-frame segments.
QUICK_MINUTES, QUICK_SEGMENT_FRAMES = 0.4, 300
#: How long a job waits for the pipeline actors of the job before it to end.
EARLIER_ACTORS_TIMEOUT_S = 30.0
#: What two nodes should give over one.
TARGET_RATIO = 1.8
#: The warm-up job's clip: a few seconds, so the runtime environment (the shipped packages) is
#: set up on the nodes before the measured job.
WARMUP_SECONDS = 4.0

def submit(cluster: LoopbackCluster, folder: Path, index: Path, settings: list[str], checkout: Path = ROOT) -> subprocess.Popen[str]:
    """`vindex submit --wait` of ``folder`` by the code in ``checkout``, running; its output in a
    pipe. The job's runtime environment ships the ``pipeline`` package the client imported, so
    the cluster runs that checkout's code too."""
    argv = cluster.vindex_argv("submit", str(folder), "--index", str(index), "--wait", *[a for s in settings for a in ("--set", s)])
    env = cluster.env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), cluster.env.get("PYTHONPATH")]))}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=checkout)


@dataclass
class JobResult:
    nodes: int
    code: str
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


def run_job(
    cluster: LoopbackCluster, folder: Path, settings: list[str], nodes: int, code: str = "this", checkout: Path = ROOT
) -> JobResult:
    """One `vindex submit --wait` by the code in ``checkout`` (named ``code`` in the tables),
    timed, with the CPU of every process of the cluster sampled."""
    # The actors of the job before (the warm-up) end a few seconds after it, unloading torch:
    # not on this job's clock or its cores.
    node_pids = [p.pid for p in cluster.node_processes]
    deadline = time.monotonic() + EARLIER_ACTORS_TIMEOUT_S
    while pipeline_actors_under(node_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    with tempfile.TemporaryDirectory(prefix="vindex-scaling-idx-") as index:
        started = time.perf_counter()
        client = submit(cluster, folder, Path(index) / "idx", settings, checkout)
        with CpuSampler([*node_pids, client.pid]) as sampler:
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
        code=code,
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
    print(f"\n{'code':>5} {'nodes':>5} {'frames':>7} {'wall s':>7} {'wall fps':>8} {'run fps':>8}  threads per actor")
    for r in results:
        logged = ",".join(map(str, r.model_threads)) or "not in the job's log"
        busy = ",".join(map(str, r.busy_threads)) or "-"
        print(f"{r.code:>5} {r.nodes:>5} {r.frames:>7} {r.wall_s:>7.1f} {r.wall_fps:>8.1f} {r.run_fps:>8.1f}  "
              f"torch (logged): {logged}; busy threads seen in /proc: {busy}")  # fmt: skip
    for r in results:
        actors = ", ".join(f"{cpu_s:.1f}" for cpu_s in r.actor_cpu_s) or "none seen"
        print(f"{r.code}, {r.nodes} node(s): CPU seconds of each pipeline actor: {actors}; {r.pools}")
        for timeline in r.actor_timelines:
            print(f"  actor's core use, {TIMELINE_STEP_S:g} s a character from submission: |{timeline}|")
    for r in results:
        working = sum(cpu_s >= ACTOR_WORKED_CPU_S for cpu_s in r.actor_cpu_s)
        if r.nodes == 2 and working < 2:
            print(f"NOTE: with 2 nodes only {working} pipeline actor did work: the pool did not grow to its "
                  "max_size, so (b) measures one node's worth of actors")  # fmt: skip
    for code in dict.fromkeys(r.code for r in results):
        one = [r for r in results if r.nodes == 1 and r.code == code]
        two = [r for r in results if r.nodes == 2 and r.code == code]
        for a, b in zip(one, two):
            print(
                f"{code}: two nodes / one node: {b.wall_fps / a.wall_fps:.2f}x over the wall time of `vindex submit --wait`, "
                f"{b.run_fps / a.run_fps:.2f}x over the run's own time (target >= {TARGET_RATIO}x)"
            )

    groups = sorted({g for r in results for g in r.cpu_s}, key=lambda g: -max(r.cpu_s.get(g, 0) for r in results))
    header = f"\n{'CPU seconds while the job ran':<62}" + "".join(f"{f'{r.code} {r.nodes}n':>11}" for r in results)
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
    parser.add_argument(
        "--checkout", type=Path, metavar="DIR",
        help="another copy of the code (a git worktree of an older commit) to run on each cluster too, in turn with this one",
    )  # fmt: skip
    parser.add_argument(
        "--nodes", type=int, nargs="+", choices=(1, 2), default=[1, 2], help="the shapes to run (default: 1 2); 2 alone to trace it"
    )
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
    copies = {"this": ROOT} | ({"other": args.checkout.resolve()} if args.checkout else {})
    if args.checkout:
        print(f"this: {ROOT}; other: {copies['other']}; on each cluster in turn (ABBA over rounds)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="vindex-scaling-") as logs:
        for round_ in range(args.rounds):
            for nodes in args.nodes:
                keep = args.keep_logs / f"nodes-{nodes}-round-{round_}" if args.keep_logs else None
                with loopback_cluster(nodes, Path(logs), pin=args.pin, keep_logs=keep) as cluster:
                    order = list(copies.items()) if round_ % 2 == 0 else list(copies.items())[::-1]
                    for code, checkout in order:
                        if args.warmup:  # each copy's own runtime environment, set up before it is timed
                            run_job(cluster, warmup_folder(), settings, nodes, code, checkout)
                        result = run_job(cluster, folder, settings, nodes, code, checkout)
                        print(f"{code}, {nodes} node(s): {result.frames} frames in {result.wall_s:.1f} s", flush=True)
                        results.append(result)
    print_results(results)


if __name__ == "__main__":
    main()
