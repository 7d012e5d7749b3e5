"""Memory stays flat with video length: peak RSS of a run on a 1-minute and an N-minute video.

    python benchmarks/memory.py [--minutes 60] [--height 480]

Each video is indexed in its own run on a fresh index through one embedded Ray; the peak
resident memory of the whole process tree (driver, Ray services, workers) is sampled during
each run. Streaming should make the long run's peak close to the short one's.
"""

from __future__ import annotations

import argparse
import tempfile

from pipeline.config import Config
from pipeline.runner import init_local_ray, run_index

# benchmarks/ is on sys.path when a script here runs.
from measure import long_clip, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    folders = {f"{m:g} min": long_clip(m, args.height) for m in (1.0, args.minutes)}
    init_local_ray()
    config = Config()
    rows = []
    for name, folder in folders.items():
        def run() -> int:
            with tempfile.TemporaryDirectory() as index:
                return run_index(str(folder), index, config, full=True, show_progress=False).counts["frames"]

        frames, seconds, peak = measure(run)
        rows.append((name, frames, frames / seconds, peak))
        print(f"{name}: {frames} frames, {frames / seconds:.0f} frames/s, peak RSS {peak / 2**20:.0f} MB", flush=True)
    print(f"{'video':<10} {'frames':>7} {'frames/s':>9} {'peak RSS':>10}")
    for name, frames, fps, peak in rows:
        print(f"{name:<10} {frames:>7} {fps:>9.0f} {peak / 2**20:>8.0f}MB")
    print(f"difference: {(rows[-1][3] - rows[0][3]) / 2**20:+.0f} MB ({args.height}p, segments of "
          f"{config.decode.segment_frames} frames)")


if __name__ == "__main__":
    main()
