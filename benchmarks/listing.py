"""Listing a large corpus: seconds and peak memory of a run's listing and diff, per size.

    python benchmarks/listing.py [--sizes 100000,1000000] [--folder-size 1000]

For each size N, a local folder of N empty ``.mp4`` files (N / ``--folder-size`` subfolders,
made once and kept under the benchmark cache) is listed by ``list_source`` exactly as
``vindex run`` lists a folder, then diffed (``diff_against_index``) against an index that
holds every one of them unchanged, so that the diff reads them all. Each size runs in a fresh
child process, so that its peak RSS (``ru_maxrss``) is that size's alone. Printed per size:
listing seconds (wall and CPU), the listing's peak RSS, the diff's seconds, the peak RSS of
listing and diff together, and bytes of peak RSS per listed video.

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

CHILD = """
import json, resource, sys, time
from pipeline.config import Config
from pipeline.digests import Digests, versions
from pipeline.sources.listing import list_source
from pipeline.index.diff import diff_against_index

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

config = Config()
base = peak_mb()
wall, cpu = time.perf_counter(), time.process_time()
listing = list_source(sys.argv[1], config.source)
listed = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "peak_mb": peak_mb()}
digests = Digests.of(versions(config))
known = [
    {"video_id": v.video_id, "uri": v.uri, "size_bytes": v.size_bytes, "etag": v.etag, "mtime": v.mtime,
     "status": "ok", "config_digest": digests.outputs, "derived_digest": digests.derived}
    for v in listing.videos
]
wall = time.perf_counter()
plan = diff_against_index(listing.videos, known, listing.scope, digests, False)
print(json.dumps({"videos": len(listing.videos), "unchanged": plan.counts["unchanged"], "listing": listed,
                  "diff_s": time.perf_counter() - wall, "peak_mb": peak_mb(), "start_mb": base}))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--folder-size", type=int, default=1000, help="files per subfolder")
    args = parser.parse_args(argv)
    print(machine_header())
    print(f"load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    print("| videos | listing s (CPU s) | listing peak RSS MB | diff s | peak RSS MB, listing and diff | bytes per video |")
    print("|---|---|---|---|---|---|")
    checkout = Path(__file__).resolve().parent.parent
    for size in (int(s) for s in args.sizes.split(",")):
        root = corpus(size, args.folder_size)
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, env=env, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        assert r["videos"] == r["unchanged"] == size, r
        per_video = (r["peak_mb"] - r["start_mb"]) * 2**20 / size
        print(f"| {size:,} | {r['listing']['wall_s']:.1f} ({r['listing']['cpu_s']:.1f}) | {r['listing']['peak_mb']:,.0f} "
              f"| {r['diff_s']:.1f} | {r['peak_mb']:,.0f} | {per_video:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
