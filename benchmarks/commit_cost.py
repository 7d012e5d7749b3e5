"""What one commit costs as the index grows, at equal batch sizes.

    python benchmarks/commit_cost.py INDEX [INDEX ...] [--batches 16,256] [--commits 20] [--rounds 2]

``benchmarks/scale.py`` times commits while it grows an index, as ``vindex run`` commits: the
batch a commit takes depends on how fast rows arrive, and the row maker shares the process
(and Python's lock) with the committing thread, so its per-video figures compare indexes of
different sizes only loosely. This script commits the same batches into indexes of different
sizes (grown beforehand with ``python benchmarks/scale.py --sizes N --group-commit --index
PATH --keep``), in this thread, each batch through the run's ``Committer`` (its periodic
compaction included), round after round with the indexes interleaved, and prints the median commit per index
and batch size, and its ratio to the first index's.

The commits stay in the indexes (videos numbered from 10**9, so they never meet the ones the
index was grown with): an index probed this way no longer holds exactly N videos.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import datetime as dt
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks import scale
from benchmarks.measure import machine_header
from pipeline.config import Config
from pipeline.digests import Digests
from pipeline.execution import runner
from pipeline.execution.committer import Committer
from pipeline.index.store import Index

#: Videos of the probe commits are numbered from here, far above any index grown by scale.py.
FIRST_PROBE_VIDEO = 10**9


def batches(maker: Any, run_id: str, first: int, size: int, count: int) -> list[list[Any]]:
    """``count`` batches of ``size`` fresh videos' rows, made before any is timed."""
    return [
        [maker.rows(scale.listed_video(n), n, run_id) for n in range(first + b * size, first + (b + 1) * size)]
        for b in range(count)
    ]


def probe(index: Index, videos: list[list[Any]], run_id: str, size: int) -> list[float]:
    """Hand each batch to a :class:`Committer` as a running run does (its last video fills the
    batch and makes the commit, the committer's periodic compaction included); the seconds
    each commit took."""
    now = dt.datetime.now(dt.timezone.utc)
    index.append_run({"run_id": run_id, "started_at": now, "heartbeat_at": now, "status": "running"})
    committer = Committer(index, size)
    seconds = []
    for batch in videos:
        for video in batch[:-1]:
            committer.add(video)
        started = time.perf_counter()
        committer.add(batch[-1])
        seconds.append(time.perf_counter() - started)
    index.append_run({"run_id": run_id, "started_at": now, "heartbeat_at": now, "status": "ok",
                      "finished_at": dt.datetime.now(dt.timezone.utc)})
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("indexes", nargs="+", help="indexes grown by benchmarks/scale.py --keep, smallest first")
    parser.add_argument("--batches", default="16,256", help="videos a commit (default 16,256)")
    parser.add_argument("--commits", type=int, default=20, help="commits per index, batch size and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(b) for b in args.batches.split(",")]

    config = Config()
    rng = np.random.default_rng(args.seed)
    maker = scale.RowMaker(Digests.of(scale.version_info(config)), scale.make_thumbnails(rng, config.embed.thumbnail_quality), rng)
    indexes = [Index(path) for path in args.indexes]
    held = {path: Index(path).read("videos", columns=["video_id"]).num_rows for path in args.indexes}

    print(f"# commit cost at equal batch sizes, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"- code: {scale.code_version()}")
    for line in machine_header().splitlines():
        print(f"- {line}")
    print(f"- {args.commits} commits per index, batch size and round; {args.rounds} rounds, indexes interleaved\n")

    timings: dict[tuple[str, int], list[float]] = {}
    next_video = FIRST_PROBE_VIDEO + args.seed * 10**7
    for round_number in range(args.rounds):
        for size in sizes:
            for path, index in zip(args.indexes, indexes):
                run_id = runner.new_run_id()
                tables = batches(maker, run_id, next_video, size, args.commits)
                next_video += size * args.commits
                seconds = probe(index, tables, run_id, size)
                timings.setdefault((path, size), []).append(statistics.median(seconds))
                print(f"round {round_number + 1}, {size} a commit, {held[path]:,} videos: median "
                      f"{statistics.median(seconds):.3f} s", file=sys.stderr)

    print("| videos in the index | videos a commit | median commit s, per round | s a video | vs the first index |")
    print("|---|---|---|---|---|")
    for size in sizes:
        first = statistics.median(timings[(args.indexes[0], size)])
        for path in args.indexes:
            rounds = timings[(path, size)]
            middle = statistics.median(rounds)
            print(f"| {held[path]:,} | {size} | {' / '.join(f'{r:.3f}' for r in rounds)} | {middle / size:.4f} | "
                  f"{middle / first:.2f}x |")


if __name__ == "__main__":
    main()
