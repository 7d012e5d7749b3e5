"""Shots and keyframes on the real-footage development set, from cached network outputs.

    python benchmarks/real_shots.py [--set ../shared/scenes-dev] [--refresh] [--per-video]

The set (``../shared/scenes-dev``, read in place, never copied) holds 5 videos edited from
real footage, 180p-720p, with exact truth: every shot, cut, dissolve and fade through black.
The first run decodes each video whole, as the pipeline does, and runs both networks at the
default settings; what the model stage hands the stitcher (both transition heads, the sampled
frames' embeddings, the decode stage's frame statistics) is cached per video in
``~/.cache/vindex/real_shots/<video>-<hash>-<precision>.npz``. Every run then stitches the
cached outputs with this checkout's own ``stitch_video``, in seconds, so a change of the shot
or keyframe rules is measured on the same network outputs.

Printed, per video with ``--per-video`` and pooled:

* shot transitions: P, R, F1 with TransNetV2's 2-frame tolerance (``benchmarks/accuracy.py``:
  a transition is the interval from the outgoing shot's last frame to the incoming one's
  first), and how many of the true fades through black are found as one transition;
* shots made only of black frames (mean luma below 16 at decode size, every frame);
* keyframes: how many, how many black (mean luma below 16), how many on a transition frame (a
  blend frame of a true dissolve or fade, black hold included).
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.algorithms.segments import Segment, decode_size
from pipeline.algorithms.stitch import SegmentResult, stitch_video
from pipeline.config import Config, config_from_dict
from pipeline.media.decode import decode_segment
from pipeline.media.probe import probe

from benchmarks.accuracy import BLACK_LUMA, Interval, match
from benchmarks.measure import PrecisionRecall, machine_header

SCENES_DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "scenes-dev"
CACHE_DIR = Path(os.environ.get("VINDEX_CACHE", Path.home() / ".cache" / "vindex")) / "real_shots"
#: The cached arrays: what one whole-video segment gives the stitcher.
CACHED = (
    "single", "many", "sample_frames", "embeddings", "frame_luma", "frame_colours", "sample_sharpness", "frame_motion",
)


@dataclass
class Video:
    """One video of the set: its truth and the model stage's outputs for it."""

    name: str
    truth: dict
    arrays: dict[str, np.ndarray]

    @property
    def transitions(self) -> list[Interval]:
        """True transitions, [last frame before, first frame after], with their kind."""
        return [(a, b, kind) for (a, b), kind in zip(self.truth["transitions"], self.truth["transition_types"])]

    def blend_frames(self) -> np.ndarray:
        """Whether each frame is a blend (or black) frame of a true dissolve or fade."""
        blend = np.zeros(int(self.truth["num_frames"]), bool)
        for first, last, kind in self.transitions:
            if kind != "cut":
                blend[first + 1 : last] = True
        return blend


def cache_path(video: Path, config: Config) -> Path:
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:12]
    return CACHE_DIR / f"{video.stem}-{digest}-{config.inference.precision}.npz"


def model_outputs(video: Path, config: Config) -> dict[str, np.ndarray]:
    """Both networks and the decode stage's statistics on one whole video, as the pipeline runs them."""
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames, predict_transitions, prepare_for_inference
    from pipeline.models.transnetv2 import load_transnetv2

    device = torch.device("cpu")
    precision = config.inference.precision
    info = probe(str(video))
    size = decode_size(*info.display_size, config.decode.width, config.decode.height)
    decoded = decode_segment(str(video), Segment(0, 1, 0, info.num_frames), config, size=size)
    shot_model = prepare_for_inference(load_transnetv2(device), device, precision)
    single, many = predict_transitions(
        shot_model, decoded.shot_frames, window=config.shots.window_frames,
        batch_windows=config.inference.shot_batch_windows, device=device, precision=precision,
    )
    embeddings = embed_frames(
        load_efficientnet_lite0(device), decoded.samples, batch_size=config.inference.embed_batch_frames,
        device=device, precision=precision,
    )
    count = decoded.num_frames
    return {
        "single": single[:count], "many": many[:count], "sample_frames": decoded.sample_frames,
        "embeddings": embeddings.astype(np.float16), "frame_luma": decoded.frame_luma,
        "frame_colours": decoded.frame_colours, "sample_sharpness": decoded.sample_sharpness,
        "frame_motion": decoded.frame_motion,
    }


def load_set(set_dir: Path, config: Config, refresh: bool) -> list[Video]:
    """Every video of the set with its cached outputs, computing those that are missing."""
    videos = []
    for path in sorted((set_dir / "videos").glob("*.mp4")):
        cached = cache_path(path, config)
        if refresh or not cached.exists():
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cached, **model_outputs(path, config))
            print(f"cached {path.name}", flush=True)
        with np.load(cached) as data:
            arrays = {k: data[k] for k in CACHED}
        truth = json.loads((set_dir / "gt" / f"{path.stem}.json").read_text())
        videos.append(Video(path.stem, truth, arrays))
    return videos


@dataclass
class Counts(PrecisionRecall):
    """What the stitcher made of some videos, against their truth."""

    true_positives: int = 0
    predicted: int = 0
    actual: int = 0
    fades: int = 0
    fades_as_one: int = 0
    black_shots: int = 0
    keyframes: int = 0
    black_keyframes: int = 0
    blend_keyframes: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def row(self) -> str:
        return (
            f"{self.precision:5.3f} {self.recall:5.3f} {self.f1:5.3f} {self.fades_as_one:>2d}/{self.fades:<2d} "
            f"{self.black_shots:>6d} {self.keyframes:>9d} {self.black_keyframes:>5d} {self.blend_keyframes:>5d}"
        )


HEADER = (
    f"{'':24s}{'P':>5s} {'R':>5s} {'F1':>5s} {'fades':>5s} {'black shots':>6s} {'keyframes':>9s} {'black':>5s} "
    f"{'blend':>5s}"
)


def score(video: Video, config: Config) -> Counts:
    """Stitch one video's cached outputs with the checkout's rules and count against the truth."""
    a = video.arrays
    count = len(a["single"])
    result = SegmentResult(
        0, 1, 0, count, a["single"], a["many"], a["sample_frames"], a["embeddings"], [b""] * len(a["sample_frames"]),
        frame_luma=a["frame_luma"], frame_colours=a["frame_colours"], sample_sharpness=a["sample_sharpness"],
        frame_motion=a["frame_motion"],
    )
    meta = {"video_id": video.name, "uri": video.name, "fps": video.truth["fps"]}
    rows = stitch_video(meta, [result], config, "r", "d")
    shots = [(s["start_frame"], s["end_frame"]) for s in rows.shots]
    predicted = [(a_end, b_start, "") for (_, a_end), (b_start, _) in zip(shots, shots[1:])]
    truth = video.transitions
    pairs, _, _ = match(truth, predicted)
    fades = [i for i, t in enumerate(truth) if t[2].startswith("fade")]
    found = {i for i, _ in pairs}
    black = a["frame_luma"] < BLACK_LUMA
    frames = np.array([k["frame"] for k in rows.keyframes], np.int64)
    return Counts(
        true_positives=len(pairs),
        predicted=len(predicted),
        actual=len(truth),
        fades=len(fades),
        # Found once, and no other predicted transition inside it.
        fades_as_one=sum(
            i in found and sum(p[1] >= truth[i][0] and p[0] <= truth[i][1] for p in predicted) == 1 for i in fades
        ),
        black_shots=sum(bool(black[s : e + 1].all()) for s, e in shots),
        keyframes=len(frames),
        black_keyframes=int(black[frames].sum()),
        blend_keyframes=int(video.blend_frames()[frames].sum()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=SCENES_DEV)
    parser.add_argument("--refresh", action="store_true", help="run the networks again")
    parser.add_argument("--per-video", action="store_true")
    args = parser.parse_args()
    if not (args.set / "videos").is_dir():
        sys.exit(f"no real-footage set at {args.set}")
    print(machine_header(), flush=True)
    config = config_from_dict({})
    videos = load_set(args.set, config, args.refresh)
    scores = [score(v, config) for v in videos]
    print(f"{len(videos)} videos, {sum(len(v.arrays['single']) for v in videos)} frames, "
          f"{sum(len(v.truth['shots']) for v in videos)} true shots; shot transitions within 2 frames")
    print(HEADER)
    if args.per_video:
        for video, counts in zip(videos, scores):
            print(f"{video.name:24s}{counts.row()}")
    total = scores[0]
    for counts in scores[1:]:
        total = total + counts
    print(f"{'all':24s}{total.row()}")


if __name__ == "__main__":
    main()
