"""Clips per second and MB per second of `vindex clips`, re-encoding against stream copy.

    python benchmarks/clips.py [--videos 4] [--seconds 20] [--width 640 --height 360] [--gop 50] [--cpus N]
    python benchmarks/clips.py --corpus benchmarks/scenes_set --check


Generates a corpus of --videos clips of --seconds each (random shot lengths 1.5-4 s, cuts,
dissolves and fades; a keyframe every --gop frames), indexes it once through an embedded Ray, then cuts one clip per shot
in each mode into a fresh folder and prints, per mode: clips, frames, wall seconds, clips/s,
source frames/s and MB/s of clip files written. Ray's start-up and the indexing are not
timed, nor is a warm-up run that starts Ray's workers; each mode's figure includes reading the index, the Ray tasks and the commits to the
clips table. ``--corpus`` takes a folder of videos instead (the real-footage scenes set);
``--check`` decodes every clip and its source and reports clips whose frame count is not
the one recorded, and the lowest PSNR of a clip's first and last frames against the source's.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from pipeline.clips.cut import DEFAULT_CRF, DEFAULT_PRESET, EncodeSettings
from pipeline.clips.run import read_clips, run_clips
from pipeline.clips.select import Selection
from pipeline.config import Config
from pipeline.execution.ray_runtime import init_local_ray
from pipeline.execution.runner import run_index
from pipeline.index.reader import open_index
from testkit import synthetic

from benchmarks.measure import machine_header

#: Shot lengths of the generated corpus at 25 fps: 1.5 to 4 s, typical of edited footage.
MIN_SHOT_FRAMES, MAX_SHOT_FRAMES = 38, 100


def corpus(folder: Path, videos: int, seconds: float, width: int, height: int, gop: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        spec = synthetic.spec_for_duration(
            100 + i, seconds, min_shot_frames=MIN_SHOT_FRAMES, max_shot_frames=MAX_SHOT_FRAMES, width=width, height=height
        )
        synthetic.write_clip(folder / f"video{i:02d}.mp4", spec, gop=gop)


def _frames(path: str) -> list[np.ndarray]:
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def check(rows: list[dict[str, object]], sources: dict[str, str]) -> tuple[int, float]:
    """Clips whose decoded frame count differs from the recorded range, and the lowest PSNR
    (dB) of a clip's first or last frame against the source's frame."""
    wrong, lowest = 0, float("inf")
    by_video: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_video.setdefault(str(row["video_id"]), []).append(row)
    for video_id, clips in by_video.items():
        source = _frames(sources[video_id])
        for row in clips:
            start, end = int(row["start_frame"]), int(row["end_frame"])  # type: ignore[call-overload]
            frames = _frames(str(row["uri"]).removeprefix("file://"))
            wrong += len(frames) != end - start + 1
            lowest = min(lowest, _psnr(frames[0], source[start]), _psnr(frames[-1], source[end]))
    return wrong, lowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="videos in the generated corpus (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--gop", type=int, default=50, help="keyframe interval of the corpus in frames (default 50: 2 s)")
    parser.add_argument("--corpus", type=Path, help="a folder of videos to use instead of generating one")
    parser.add_argument("--check", action="store_true", help="decode every clip: frame counts and PSNR against the source")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the embedded Ray")
    args = parser.parse_args()
    print(machine_header(), flush=True)

    work = Path(tempfile.mkdtemp(prefix="vindex-clips-bench-"))
    folder = args.corpus.resolve() if args.corpus else work / "corpus"
    if not args.corpus:
        corpus(folder, args.videos, args.seconds, args.width, args.height, args.gop)
    init_local_ray(num_cpus=args.cpus)
    index_uri = str(work / "index")
    run_index(str(folder), index_uri, Config(), show_progress=False)
    index = open_index(index_uri)
    shots = index.table("shots", columns=["start_frame", "end_frame"])
    videos = index.table("videos", columns=["video_id", "uri", "num_frames", "width", "height"]).to_pylist()
    sources = {str(v["video_id"]): str(v["uri"]).removeprefix("file://") for v in videos}
    what = (
        f"{folder}" if args.corpus
        else f"{args.videos} generated videos of {args.seconds:g} s, a keyframe every {args.gop} frames"
    )
    print(
        f"corpus: {what}: {len(videos)} videos, {sum(v['num_frames'] or 0 for v in videos):,} frames, "
        f"{shots.num_rows} shots; {args.cpus} CPUs for Ray"
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
        if args.check:
            wrong, lowest = check([r for r in rows if r["status"] == "ok"], sources)
            print(f"  check: {wrong} clips with another frame count than recorded; lowest first/last-frame PSNR {lowest:.1f} dB")
    print(f"(files in {work})")


if __name__ == "__main__":
    main()
