"""Start-up breakdown of `vindex run`: seconds from the command to each step of a run.

Runs the command in a fresh process with ``VINDEX_TRACE`` set (see
``pipeline/execution/timeline.py``) into a fresh index, and prints, for each step, when the
first process reached it, counted from the moment the command was started: the command's
imports done, listing diffed, Ray started, the first actor up, its weights loaded, the first
frame decoded, the first video committed, the run done, and the process's exit. Then the CPU
seconds the run's whole process tree took, per kind of process (the command, Ray's servers and
agents, each helper actor, the pipeline's actors, workers still starting; sampled from /proc
by ``benchmarks/cpu.py``): on a machine shared with other work these hold better than the
seconds, and they show what each process costs a run on few cores.

    python benchmarks/startup.py                          # the README's first command (the sample)
    python benchmarks/startup.py --source DIR --repeat 3
    python benchmarks/startup.py --checkout /tmp/vindex-before   # interleaved A/B with another copy

``--checkout`` runs another copy of the code (a ``git worktree`` or ``git archive`` of an
older commit) alternately with this one, so that both see the same load on a shared machine;
steps the other copy does not mark are shown as ``-``.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from pipeline.execution.timeline import STEPS, TRACE_ENV, read_marks

from benchmarks.measure import ROOT, machine_header, run_vindex

#: The column after the run's own steps: the process has exited.
EXITED = "exited"
#: The row of the CPU table that sums the others.
TOTAL = "all processes"


def run_once(checkout: Path, source: str | None, extra: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds from starting ``vindex run`` (the code in ``checkout``) to each step, and the
    CPU seconds of its process tree per kind of process."""
    with tempfile.TemporaryDirectory(prefix="vindex-startup-") as work:
        trace = os.path.join(work, "trace.jsonl")
        args = ["run", *([source] if source else []), "--index", os.path.join(work, "index"), "--quiet", *extra]
        run = run_vindex(*args, checkout=checkout, cwd=checkout, env={TRACE_ENV: trace}, sample_cpu=True)
        run.check(ok=(0, 1))
        seconds: dict[str, float] = {}
        if os.path.exists(trace):
            for entry in read_marks(trace):
                step = str(entry["mark"])
                seconds.setdefault(step, float(entry["t"]) - run.started_at)
        seconds[EXITED] = run.seconds
        return seconds, run.cpu_s or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="what to index (default: the built-in sample corpus)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each copy (default 3); medians printed")
    parser.add_argument("--checkout", type=Path, help="another copy of the code to run alternately (before)")
    parser.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE passed to vindex run")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    extra = [f"--set={item}" for item in args.set]
    copies = {"this": ROOT} | ({"other": args.checkout.resolve()} if args.checkout else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in copies}
    cpu: dict[str, list[dict[str, float]]] = {name: [] for name in copies}
    for attempt in range(args.repeat):
        # ABBA order: a load that drifts during the runs favours neither copy.
        for name, checkout in (list(copies.items()) if attempt % 2 == 0 else list(copies.items())[::-1]):
            seconds, cpu_s = run_once(checkout, args.source, extra)
            runs[name].append(seconds)
            cpu[name].append(cpu_s)
            print(f"# run {attempt + 1} of {name}: {runs[name][-1][EXITED]:.1f} s", file=sys.stderr)
    columns = [*STEPS, EXITED]
    print("| step | " + " | ".join(f"{name} ({checkout})" for name, checkout in copies.items()) + " |")
    print("|---|" + "---|" * len(copies))
    for step in columns:
        cells = []
        for name in copies:
            values = [run[step] for run in runs[name] if step in run]
            cells.append(f"{statistics.median(values):.2f} s" if values else "-")
        print(f"| {step} | " + " | ".join(cells) + " |")
    print(f"(median of {args.repeat} runs, seconds from the command's start; {os.cpu_count()} CPUs)")
    print()
    print_cpu_table(copies, cpu)


def print_cpu_table(copies: dict[str, Path], cpu: dict[str, list[dict[str, float]]]) -> None:
    """Median CPU seconds per kind of process, each copy a column, the busiest kinds first."""
    for runs in cpu.values():
        for run in runs:
            run[TOTAL] = sum(run.values())
    groups = sorted({g for runs in cpu.values() for run in runs for g in run}, key=lambda g: (g != TOTAL, g))
    median = {
        name: {g: statistics.median(run.get(g, 0.0) for run in runs) for g in groups} for name, runs in cpu.items()
    }
    groups.sort(key=lambda g: (g != TOTAL, -max(median[name][g] for name in copies)))
    print("| CPU seconds | " + " | ".join(f"{name}" for name in copies) + " |")
    print("|---|" + "---|" * len(copies))
    for group in groups:
        print(f"| {group} | " + " | ".join(f"{median[name][group]:.1f}" for name in copies) + " |")
    print("(median per kind of process, the run's whole process tree sampled from /proc every 0.5 s)")


if __name__ == "__main__":
    main()
