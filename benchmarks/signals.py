"""Shots' curation signals: what they measure on real and generated shots, and what they cost.

* ``--measure`` (default): per-shot motion, brightness and sharpness (as
  :func:`pipeline.algorithms.frame_stats.shot_signals` computes them at stitch) on

  - the real-footage scenes set (``benchmarks/scenes_set``), on its true shots, each labelled
    with the camera move the build script gave it (still, pan, zoom: replayed from
    ``build_scenes_set.plan_video`` with its seed; only videos whose replayed shot lengths and
    joins match the truth are labelled, the rest are counted as "unlabelled");
  - generated shots of known content: a still shot (one rendered frame held), the renderer's
    ordinary shots (slow drift, moving shapes, grain), pans and objects crossing the frame;

  and how many shots each label has below :data:`~pipeline.algorithms.frame_stats.STILL_MOTION`.
* ``--cost``: the decode statistics' cost per frame with the motion measure (``frame_measures``)
  and without it (``frame_statistics``, what decoding measured before), on the
  scenes set's real 48x27 frames, same run, interleaved (the order alternates each round), as
  a share of the pipeline's end-to-end time per frame (``--pipeline-fps``, default the ~170
  frames/s measured end to end) and of the decode stage's own time per frame (measured here,
  the same run: the stricter share). Also a same-run A/B of the whole decode stage
  (``decode_segment`` on every video, with the motion measure and with it stubbed out).

Run: ``python benchmarks/signals.py`` (both parts; ``--rounds`` for the cost part). Timings on a
loaded machine are noisy: the ratios of interleaved measurements hold better than the times.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

from benchmarks import build_scenes_set  # the scenes set's own build script: its edit plan
from benchmarks.measure import decode_whole, machine_header

from pipeline.algorithms.frame_stats import (
    STILL_MOTION,
    frame_measures,
    frame_motion,
    frame_statistics,
    shot_signals,
)
from pipeline.algorithms.keyframes import MIXED_MARGIN_FRAMES
from pipeline.config import Config
from pipeline.models.spec import SHOT_CONTEXT_FRAMES
from pipeline.media import decode as decode_module
from pipeline.media.decode import DECODE_CHUNK_FRAMES, DecodedSegment
from pipeline.synthetic import render_clip, render_shot_frame
from testkit import synthetic

SCENES_SET = Path(__file__).resolve().parent / "scenes_set"
#: The end-to-end rate of a whole run measured before (frames/s), the denominator of the cost share.
PIPELINE_FPS = 170.0
#: Stand-in source length for replaying the build script's plan: bounds its random offsets only.
REPLAY_SOURCE_FRAMES = 10**6


@dataclass
class ShotMeasure:
    source: str
    label: str
    frames: int
    motion: float | None
    brightness: float | None
    sharpness: float | None


def camera_moves() -> dict[str, list[str]]:
    """Each scenes-set video's camera move per shot (still | pan | zoom), from the build script's
    plan replayed with its seed; a video whose replay disagrees with its truth is left out."""
    by_place: dict[str, list[tuple[build_scenes_set.Source, int]]] = {}
    for source in build_scenes_set.SOURCES:
        by_place.setdefault(source.place, []).append((source, REPLAY_SOURCE_FRAMES))
    rng = np.random.default_rng(build_scenes_set.SEED)
    moves: dict[str, list[str]] = {}
    for video in range(len(build_scenes_set.VIDEO_LAYOUTS)):
        scenes, joins = build_scenes_set.plan_video(video, rng, by_place)
        shots = [s for scene in scenes for s in scene]
        truth = json.loads((SCENES_SET / f"scenes_{video + 1:02d}.json").read_text())
        lengths = [s["end_frame"] - s["start_frame"] + 1 for s in truth["shots"]]
        kinds = [t["kind"] for t in truth["transitions"]]
        # Shown frames of a shot in the truth: its pure frames plus the blend frames it keeps.
        matches = len(shots) == len(lengths) and [k for k, _ in joins] == kinds and all(
            shot.pure <= length <= shot.shown for shot, length in zip(shots, lengths)
        )
        if matches:
            moves[truth["video"]] = [
                "still" if s.framing.start == s.framing.end else "pan" if s.framing.start[2] == s.framing.end[2] else "zoom"
                for s in shots
            ]
    return moves


def transition_frames(num_frames: int, transitions: list[dict[str, int]]) -> np.ndarray:
    """Frames within :data:`MIXED_MARGIN_FRAMES` of a true transition (a cut: its two frames),
    standing in for what the shot network's transition head marks in the pipeline."""
    mixed = np.zeros(num_frames, bool)
    for t in transitions:
        first, last = (t["last_frame"], t["first_frame"]) if t["kind"] == "cut" else (t["first_frame"], t["last_frame"])
        mixed[max(0, first - MIXED_MARGIN_FRAMES) : last + MIXED_MARGIN_FRAMES + 1] = True
    return mixed


def signals_of(
    decoded: DecodedSegment, shots: list[tuple[int, int]], mixed: np.ndarray, labels: list[str], source: str
) -> list[ShotMeasure]:
    out = []
    for (first, last), label in zip(shots, labels):
        s = shot_signals(
            first, last, mixed, decoded.frame_luma, decoded.frame_motion, decoded.sample_frames, decoded.sample_sharpness
        )
        out.append(ShotMeasure(source, label, last - first + 1, s.motion, s.brightness, s.sharpness))
    return out


def real_shots(config: Config) -> tuple[list[ShotMeasure], list[DecodedSegment]]:
    moves = camera_moves()
    measures, decoded_all = [], []
    for path in sorted(SCENES_SET.glob("scenes_*.mp4")):
        truth = json.loads(path.with_suffix(".json").read_text())
        decoded = decode_whole(path, config, truth["num_frames"], size=(config.decode.width, config.decode.height))
        decoded_all.append(decoded)
        shots = [(s["start_frame"], s["end_frame"]) for s in truth["shots"]]
        labels = moves.get(path.name, ["unlabelled"] * len(shots))
        measures += signals_of(decoded, shots, transition_frames(decoded.num_frames, truth["transitions"]), labels, path.name)
    return measures, decoded_all


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """Encode RGB frames as H.264 (CRF 18, as the generator's clips)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


#: Generated shots of known content: (label, ShotSpec); a "still" shot holds its first frame.
GENERATED = (
    ("still", synthetic.ShotSpec(60, 0)),
    ("still", synthetic.ShotSpec(60, 3)),
    ("still", synthetic.ShotSpec(60, 6)),
    ("drift", synthetic.ShotSpec(60, 1)),
    ("drift", synthetic.ShotSpec(60, 4)),
    ("drift", synthetic.ShotSpec(60, 7)),
    ("pan", synthetic.ShotSpec(60, 2, pan_widths_per_s=0.3)),
    ("pan", synthetic.ShotSpec(60, 5, pan_widths_per_s=1.0)),
    ("pass", synthetic.ShotSpec(60, 8, passes=(synthetic.PassSpec(10, 30),))),
    ("pass", synthetic.ShotSpec(60, 9, passes=(synthetic.PassSpec(20, 12, leftward=True),))),
)


def generated_shots(config: Config, folder: Path) -> list[ShotMeasure]:
    specs = [spec for _, spec in GENERATED]
    clip = synthetic.ClipSpec(tuple(specs), tuple(synthetic.TransitionSpec.cut() for _ in specs[1:]), seed=11)
    rendered = list(render_clip(clip))
    frames: list[np.ndarray] = []
    shots = []
    for index, (label, spec) in enumerate(GENERATED):
        start = len(frames)
        own = rendered[start : start + spec.num_frames]
        frames += [render_shot_frame(clip, index, 0)] * spec.num_frames if label == "still" else own
        shots.append((start, len(frames) - 1))
    path = folder / "generated.mp4"
    write_frames(path, frames)
    decoded = decode_whole(path, config, len(frames), size=(config.decode.width, config.decode.height))
    cuts = [{"kind": "cut", "first_frame": first, "last_frame": first - 1} for first, _ in shots[1:]]
    return signals_of(decoded, shots, transition_frames(len(frames), cuts), [label for label, _ in GENERATED], "generated")


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    q = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    return " ".join(f"{v:.4f}" if abs(v) < 10 else f"{v:.0f}" for v in q)


def report(measures: list[ShotMeasure], title: str) -> None:
    print(f"\n{title}: {len(measures)} shots; per label: count, still (motion < {STILL_MOTION}), "
          "motion min/q1/median/q3/max")
    for label in sorted({m.label for m in measures}):
        group = [m for m in measures if m.label == label and m.motion is not None]
        motions = [m.motion for m in group if m.motion is not None]
        still = sum(m < STILL_MOTION for m in motions)
        print(f"  {label:10s} {len(group):3d}  still {still:3d}   motion {summary(motions)}")
    everything = [m for m in measures if m.motion is not None]
    print(f"  all: motion {summary([m.motion for m in everything if m.motion is not None])}")
    print(f"       brightness {summary([m.brightness for m in everything if m.brightness is not None])}")
    print(f"       sharpness {summary([m.sharpness for m in everything if m.sharpness is not None])}")
    print(f"       still: {sum(m.motion < STILL_MOTION for m in everything if m.motion is not None)} of {len(everything)}")


def per_frame_us(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    frames = fn()
    return (time.perf_counter() - started) / frames * 1e6


def cost(decoded_all: list[DecodedSegment], rounds: int, pipeline_fps: float, config: Config) -> None:
    """Same-run, interleaved A/B of the statistics with and without motion, and of the decode stage."""
    small = [d.shot_frames[SHOT_CONTEXT_FRAMES : SHOT_CONTEXT_FRAMES + d.num_frames] for d in decoded_all]
    chunks = [s[i : i + DECODE_CHUNK_FRAMES] for s in small for i in range(0, len(s), DECODE_CHUNK_FRAMES)]
    total = sum(len(c) for c in chunks)

    def without() -> int:
        for chunk in chunks:
            frame_statistics(chunk)
        return total

    def with_motion() -> int:
        for chunk in chunks:
            frame_measures(chunk, chunk[0])  # with a frame before, as a segment's context frame
        return total

    def apart() -> int:
        for chunk in chunks:
            frame_statistics(chunk)
            frame_motion(chunk, chunk[0])
        return total

    times: dict[str, list[float]] = {"without": [], "with": [], "apart": []}
    for r in range(rounds):
        order = [("without", without), ("with", with_motion), ("apart", apart)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(per_frame_us(fn))
    base, new = statistics.median(times["without"]), statistics.median(times["with"])
    extra = new - base
    pipeline_us = 1e6 / pipeline_fps
    print(f"\ncost on {total} real 48x27 frames, {rounds} interleaved rounds (median per frame):")
    print(f"  statistics without motion {base:.2f} us, with motion {new:.2f} us: +{extra:.2f} us per frame")
    print(f"  (motion measured apart, its own luma planes: {statistics.median(times['apart']):.2f} us)")
    print(f"  share of the pipeline's {pipeline_us:.0f} us per frame ({pipeline_fps:.0f} frames/s end to end): "
          f"{extra / pipeline_us:.3%}")

    paths = sorted(SCENES_SET.glob("scenes_*.mp4"))
    counts = [json.loads(p.with_suffix(".json").read_text())["num_frames"] for p in paths]

    def decode_stage() -> int:
        return sum(decode_whole(p, config, n, size=(config.decode.width, config.decode.height)).num_frames for p, n in zip(paths, counts))

    def no_motion(frames: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        luma, colours = frame_statistics(frames)  # what decoding measured before the motion
        return luma, colours, np.zeros(len(frames), np.float32)

    def decode_without() -> int:
        with mock.patch.object(decode_module, "frame_measures", no_motion):
            return decode_stage()

    stage: dict[str, list[float]] = {"without": [], "with": []}
    stage_rounds = max(3, rounds // 2)
    for r in range(stage_rounds):
        order = [("without", decode_without), ("with", decode_stage)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            stage[name].append(per_frame_us(fn))
    stage_base, stage_new = statistics.median(stage["without"]), statistics.median(stage["with"])
    print(f"  share of the decode stage's own {stage_base:.0f} us per frame (measured here): {extra / stage_base:.3%}")
    fastest = min(stage["with"]) / min(stage["without"])
    print(f"  decode stage A/B, {stage_rounds} interleaved rounds: without motion {stage_base:.0f} us, "
          f"with {stage_new:.0f} us per frame (medians): ratio {stage_new / stage_base:.3f}; fastest rounds' "
          f"ratio {fastest:.3f} (rounds without/with: "
          f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(stage['without'], stage['with']))})")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="only the signals on real and generated shots")
    parser.add_argument("--cost", action="store_true", help="only the cost of the motion measure")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the cost A/B")
    parser.add_argument("--pipeline-fps", type=float, default=PIPELINE_FPS, help="end-to-end frames/s of a run")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    both = not (args.measure or args.cost)
    config = Config()
    real, decoded_all = real_shots(config)
    if args.measure or both:
        report(real, "real footage (benchmarks/scenes_set, true shots, labelled by camera move)")
        with tempfile.TemporaryDirectory() as folder:
            report(generated_shots(config, Path(folder)), "generated shots")
    if args.cost or both:
        cost(decoded_all, args.rounds, args.pipeline_fps, config)


if __name__ == "__main__":
    main()
