"""Clips per second and MB per second of `vindex clips`, re-encoding against stream copy.

    python benchmarks/clips.py [--videos 4] [--seconds 20] [--width 640 --height 360] [--gop 50] [--cpus N]

Generates a corpus of --videos clips of --seconds each (random shot lengths 1.5-4 s, cuts,
dissolves and fades; a keyframe every --gop frames), indexes it once through an embedded Ray, then cuts one clip per shot
in each mode into a fresh folder and prints, per mode: clips, frames, wall seconds, clips/s,
source frames/s and MB/s of clip files written. Ray's start-up and the indexing are not
timed, nor is a warm-up run that starts Ray's workers; each mode's figure includes reading the index, the Ray tasks and the commits to the
clips table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# The repository root: the checkout's own `pipeline`, and `testkit` (test support, not installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline.clips.cut import DEFAULT_CRF, DEFAULT_PRESET, EncodeSettings
from pipeline.clips.run import read_clips, run_clips
from pipeline.clips.select import Selection
from pipeline.config import Config
from pipeline.execution.ray_runtime import init_local_ray
from pipeline.execution.runner import run_index
from pipeline.index.reader import open_index
from testkit import synthetic

#: Shot lengths of the generated corpus at 25 fps: 1.5 to 4 s, typical of edited footage.
MIN_SHOT_FRAMES, MAX_SHOT_FRAMES = 38, 100


def corpus(folder: Path, videos: int, seconds: float, width: int, height: int, gop: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        spec = synthetic.spec_for_duration(
            100 + i, seconds, min_shot_frames=MIN_SHOT_FRAMES, max_shot_frames=MAX_SHOT_FRAMES, width=width, height=height
        )
        synthetic.write_clip(folder / f"video{i:02d}.mp4", spec, gop=gop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="videos in the generated corpus (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--gop", type=int, default=50, help="keyframe interval of the corpus in frames (default 50: 2 s)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the embedded Ray")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vindex-clips-bench-"))
    corpus(work / "corpus", args.videos, args.seconds, args.width, args.height, args.gop)
    init_local_ray(num_cpus=args.cpus)
    index_uri = str(work / "index")
    run_index(str(work / "corpus"), index_uri, Config(), show_progress=False)
    index = open_index(index_uri)
    shots = index.table("shots", columns=["start_frame", "end_frame"])
    print(
        f"corpus: {args.videos} videos of {args.seconds:g} s at {args.width}x{args.height}, 25 fps, "
        f"{shots.num_rows} shots, a keyframe every {args.gop} frames; {args.cpus} CPUs for Ray"
    )
    # Warm-up: the first tasks start Ray's workers and import PyAV; no mode should pay for it.
    run_clips(index, str(work / "warm-up"), Selection(max_seconds=1.0), EncodeSettings("copy"), show_progress=False)
    print(f"{'mode':<28} {'clips':>6} {'frames':>7} {'seconds':>8} {'clips/s':>8} {'frames/s':>9} {'MB':>7} {'MB/s':>7}")
    modes = {
        f"re-encode (crf {DEFAULT_CRF}, {DEFAULT_PRESET})": EncodeSettings(),
        "re-encode (crf 23, ultrafast)": EncodeSettings(crf=23, preset="ultrafast"),
        "copy (keyframe-aligned)": EncodeSettings("copy"),
    }
    for name, settings in modes.items():
        started = time.perf_counter()
        summary = run_clips(index, str(work / f"out-{settings.mode}-{settings.crf}"), Selection(), settings, show_progress=False)
        seconds = time.perf_counter() - started
        rows = [r for r in read_clips(index).to_pylist() if r["run_id"] == summary.run_id]
        frames = sum(r["end_frame"] - r["start_frame"] + 1 for r in rows if r["status"] == "ok")
        mb = summary.bytes_written / 1e6
        print(
            f"{name:<28} {summary.ok:>6} {frames:>7} {seconds:>8.1f} {summary.ok / seconds:>8.1f} "
            f"{frames / seconds:>9,.0f} {mb:>7.1f} {mb / seconds:>7.2f}"
        )
        if summary.failed:
            print(f"  {summary.failed} clips failed: {summary.failures[0].message}")
    print(f"(files in {work})")


if __name__ == "__main__":
    main()
