"""Memory stays flat with video length: peak memory of a run on a 1-minute and an N-minute video.

    python benchmarks/memory.py [--minutes 60] [--height 480] [--set SECTION.KEY=VALUE ...]

Each video is indexed by its own ``vindex run`` process (embedded Ray, fresh index), as a
user would run it, so nothing of one run (actors, object-store pages) lingers into the other.
The peak proportional set size (PSS: shared object-store pages counted once) of the whole
process tree (driver, Ray services, workers) is sampled every 0.25 s. Streaming should make
the long run's peak close to the short one's.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import tempfile

from benchmarks.measure import long_clip, machine_header, measure, run_vindex, vindex_run_args


def run_cli(folder: str, overrides: list[str]) -> int:
    """Index ``folder`` with the ``vindex`` command in a child process; returns frames indexed."""
    with tempfile.TemporaryDirectory() as index:
        run = run_vindex(*vindex_run_args(folder, index, overrides), "--full").check()
    return run.run_summary()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override passed to each run")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    folders = {f"{m:g} min": long_clip(m, args.height) for m in (1.0, args.minutes)}
    rows = []
    for name, folder in folders.items():
        frames, seconds, peak = measure(lambda: run_cli(str(folder), args.set))
        rows.append((name, frames, frames / seconds, peak))
        print(f"{name}: {frames} frames, {frames / seconds:.0f} frames/s, peak PSS {peak / 2**20:.0f} MB", flush=True)
    print(f"\n{'video':<10} {'frames':>7} {'frames/s':>9} {'peak PSS':>10}")
    for name, frames, fps, peak in rows:
        print(f"{name:<10} {frames:>7} {fps:>9.0f} {peak / 2**20:>8.0f}MB")
    settings = ", ".join(args.set) or "default settings"
    print(f"difference: {(rows[-1][3] - rows[0][3]) / 2**20:+.0f} MB ({args.height}p, {settings})")


if __name__ == "__main__":
    main()
