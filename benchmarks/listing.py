"""Listing a large corpus: seconds and peak memory of a run's listing and diff, per size.

    python benchmarks/listing.py [--sizes 100000,1000000] [--folder-size 1000]

For each size N, a local folder of N empty ``.mp4`` files (N / ``--folder-size`` subfolders,
made once and kept under the benchmark cache) is listed exactly as ``vindex run`` lists it
(``stream_source`` into the run's listing spill), then diffed (``plan_run``) against an index
whose ``videos`` table (a Delta table, made once and kept beside the folder) holds every one
of them unchanged, so that the diff reads them all and joins them all. Each size runs in a
fresh child process, so that its peak RSS (``ru_maxrss``) is that size's alone. Printed per
size: listing seconds (wall and CPU), the listing's peak RSS, the diff's seconds (wall and
CPU), the peak RSS of listing and diff together, and bytes of peak RSS (above that after
imports) per listed video; with the load average at the start (seconds on a shared machine
are not reliable; peak memory is). ``--path lists --checkout OLDER`` measures the same with
the listing and the index rows held as lists, as runs did before they streamed.

The files are empty: what is measured is the listing (the filesystem's walk, one record per
video) and the diff, not reading videos. A local filesystem, so object stores' request
latency is not in it.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import CACHE, machine_header

COMMON = """
import json, resource, sys, tempfile, time
from pipeline.config import Config
from pipeline.digests import Digests, versions

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

config = Config()
digests = Digests.of(versions(config))
"""

#: Lists the folder and diffs it against the index, as a run does.
CHILD = COMMON + """
from pipeline.index.diff import plan_run
from pipeline.index.store import Index
from pipeline.sources.listing import stream_source

base = peak_mb()
with tempfile.TemporaryDirectory(prefix="vindex-run-") as work:
    wall, cpu = time.perf_counter(), time.process_time()
    listing = stream_source(sys.argv[1], config.source)
    listed = listing.spill(work)
    done = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "peak_mb": peak_mb()}
    wall, cpu = time.perf_counter(), time.process_time()
    plan = plan_run(listed, Index(sys.argv[2]).dataset("videos"), listing.scope, digests, False, work)
    diff = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
print(json.dumps({"videos": listed.num_rows, "unchanged": plan.counts["unchanged"], "listing": done, "diff": diff,
                  "peak_mb": peak_mb(), "start_mb": base}))
"""

#: The same as runs did before they streamed (``--path lists``; with ``--checkout`` of an older
#: vindex): the listing held as a list, the index's listing columns read whole as Python dicts.
CHILD_LISTS = COMMON + """
from pipeline.index.diff import KNOWN_COLUMNS, diff_against_index
from pipeline.index.store import Index
from pipeline.sources.listing import list_source

base = peak_mb()
wall, cpu = time.perf_counter(), time.process_time()
listing = list_source(sys.argv[1], config.source)
done = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "peak_mb": peak_mb()}
wall, cpu = time.perf_counter(), time.process_time()
known = Index(sys.argv[2]).read("videos", columns=KNOWN_COLUMNS).to_pylist()
plan = diff_against_index(listing.videos, known, listing.scope, digests, False)
diff = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
print(json.dumps({"videos": len(listing.videos), "unchanged": plan.counts["unchanged"], "listing": done, "diff": diff,
                  "peak_mb": peak_mb(), "start_mb": base}))
"""

#: Writes an index whose videos table holds every video of the folder, indexed unchanged.
BUILD = COMMON + """
import pyarrow as pa
from deltalake import write_deltalake
from pipeline.index.schemas import VIDEOS, table_uri
from pipeline.index.store import Index

from pipeline.sources.listing import stream_source

index = Index(sys.argv[2])
index.ensure()
for batch in stream_source(sys.argv[1], config.source).batches:
    rows = [{**row, "status": "ok", "config_digest": digests.outputs, "derived_digest": digests.derived}
            for row in batch.to_pylist()]
    write_deltalake(table_uri(sys.argv[2], "videos"), pa.Table.from_pylist(rows, schema=VIDEOS), mode="append")
print(json.dumps({"digest": digests.outputs + digests.derived}))
"""


def corpus(size: int, folder_size: int) -> Path:
    """A folder of ``size`` empty videos, made once."""
    root = CACHE / f"listing_{size}_{folder_size}"
    done = root / ".complete"
    if done.exists():
        return root
    started = time.perf_counter()
    for folder in range(-(-size // folder_size)):
        path = root / f"d{folder:05d}"
        path.mkdir(parents=True, exist_ok=True)
        for i in range(min(folder_size, size - folder * folder_size)):
            (path / f"v{i:05d}.mp4").touch()
    done.touch()
    print(f"made {size:,} empty files in {time.perf_counter() - started:.0f} s under {root}", file=sys.stderr)
    return root


def indexed(root: Path, env: dict[str, str]) -> Path:
    """An index holding every video of ``root`` as indexed unchanged by these settings, made once
    (per settings: a change of them makes every video changed)."""
    digest = subprocess.run(
        [sys.executable, "-c", COMMON + "print(digests.outputs + digests.derived)"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip()[:12]  # fmt: skip
    index = root.with_name(root.name + f"_index_{digest}")
    done = index / ".complete"
    if not done.exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, str(root), str(index)], env=env, check=True, capture_output=True)
        done.touch()
        print(f"made the index of {root.name} in {time.perf_counter() - started:.0f} s under {index}", file=sys.stderr)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--folder-size", type=int, default=1000, help="files per subfolder")
    parser.add_argument(
        "--path", choices=("run", "lists"), default="run",
        help="run: the run's streaming listing and diff; lists: the listing and index rows held as lists, as before",
    )  # fmt: skip
    parser.add_argument("--checkout", type=Path, help="the vindex checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    print(machine_header())
    print(f"load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"path: {args.path}; checkout: {args.checkout or 'this one'}\n")
    print(
        "| videos | listing s (CPU s) | listing peak RSS MB | diff s (CPU s) | peak RSS MB, listing and diff "
        "| bytes per video | load average |"
    )
    print("|---|---|---|---|---|---|---|")
    here = Path(__file__).resolve().parent.parent

    def environment(checkout: Path) -> dict[str, str]:
        return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}

    env = environment(here)
    measured = environment(args.checkout.resolve()) if args.checkout else env
    for size in (int(s) for s in args.sizes.split(",")):
        root = corpus(size, args.folder_size)
        index = indexed(root, env)
        load = os.getloadavg()[0]
        child = CHILD if args.path == "run" else CHILD_LISTS
        done = subprocess.run(
            [sys.executable, "-c", child, str(root), str(index)], capture_output=True, text=True, env=measured, check=True
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        assert r["videos"] == r["unchanged"] == size, r
        per_video = (r["peak_mb"] - r["start_mb"]) * 2**20 / size
        listing, diff = r["listing"], r["diff"]
        print(
            f"| {size:,} | {listing['wall_s']:.1f} ({listing['cpu_s']:.1f}) | {listing['peak_mb']:,.0f} "
            f"| {diff['wall_s']:.1f} ({diff['cpu_s']:.1f}) | {r['peak_mb']:,.0f} | {per_video:,.0f} | {load:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
