"""Shot-boundary precision, recall and F1 on generated clips with known transitions.

Protocol (as in the TransNetV2 paper): a predicted transition matches a true one when the
two frame intervals overlap after widening each by ``TOLERANCE_FRAMES``; each true
transition matches at most one prediction. A hard cut between frames c-1 and c is the
interval [c-1, c]. Also reports how many true gradual transitions were found as gradual.

    python benchmarks/accuracy.py [--clips 6] [--variants fp32-100,bf16-200]

A variant is PRECISION-WINDOW, e.g. ``bf16-200`` = bf16 autocast, 200-frame windows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import synthetic
from pipeline.config import config_from_dict
from pipeline.decode import Segment, decode_segment
from pipeline.models.inference import predict_transitions
from pipeline.models.transnetv2 import load_transnetv2
from pipeline.shots import detect_shots

TOLERANCE_FRAMES = 2
#: (width, height, fps) of the benchmark clips: several resolutions and frame rates.
FORMATS = [(320, 180, 25.0), (640, 360, 30.0), (480, 270, 24.0), (854, 480, 25.0), (256, 144, 29.97), (640, 480, 50.0)]


@dataclass
class Score:
    true_positives: int = 0
    predicted: int = 0
    actual: int = 0
    gradual_true: int = 0
    gradual_found_as_gradual: int = 0

    def add(self, other: "Score") -> None:
        for field in self.__dataclass_fields__:
            setattr(self, field, getattr(self, field) + getattr(other, field))

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def true_intervals(truth: synthetic.ClipTruth) -> list[tuple[int, int, str]]:
    out = []
    for t in truth.transitions:
        if t.kind == "cut":
            out.append((t.first_frame - 1, t.first_frame, "cut"))
        else:
            out.append((t.first_frame, t.last_frame, "gradual"))
    return out


def predicted_intervals(shots: list) -> list[tuple[int, int, str]]:  # type: ignore[type-arg]
    """Intervals between consecutive shots: [last frame of one, first frame of the next]."""
    return [(a.end_frame, b.start_frame, b.transition) for a, b in zip(shots, shots[1:])]


def score(truth: list[tuple[int, int, str]], predicted: list[tuple[int, int, str]]) -> Score:
    result = Score(predicted=len(predicted), actual=len(truth))
    used: set[int] = set()
    for t_first, t_last, t_kind in truth:
        if t_kind == "gradual":
            result.gradual_true += 1
        for i, (p_first, p_last, p_kind) in enumerate(predicted):
            if i in used:
                continue
            if p_first - TOLERANCE_FRAMES <= t_last and t_first <= p_last + TOLERANCE_FRAMES:
                used.add(i)
                result.true_positives += 1
                if t_kind == "gradual" and p_kind == "gradual":
                    result.gradual_found_as_gradual += 1
                break
    return result


def benchmark_set(folder: Path, clips: int) -> list[tuple[Path, synthetic.ClipTruth]]:
    out = []
    for i in range(clips):
        width, height, fps = FORMATS[i % len(FORMATS)]
        spec = synthetic.random_spec(
            100 + i, 24, min_shot_frames=12, max_shot_frames=90, p_dissolve=0.25, p_fade=0.15,
            dissolve_frames=(6, 30), fade_frames=(6, 30), reuse_prob=0.2, width=width, height=height, fps=fps,
        )
        path = folder / f"bench_{i}_{width}x{height}.mp4"
        out.append((path, synthetic.write_clip(path, spec)))
    return out


def evaluate(clips: list[tuple[Path, synthetic.ClipTruth]], precision: str, window: int) -> tuple[Score, float]:
    config = config_from_dict({"shots": {"precision": precision, "window_frames": window}})
    model = load_transnetv2()
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last_3d)
    total, seconds = Score(), 0.0
    for path, truth in clips:
        decoded = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), config)
        started = time.perf_counter()
        single, many = predict_transitions(
            model, decoded.shot_frames, window=window, batch_windows=4, device=torch.device("cpu"), precision=precision
        )
        seconds += time.perf_counter() - started
        shots = detect_shots(single[: truth.num_frames], many[: truth.num_frames], config.shots)
        total.add(score(true_intervals(truth), predicted_intervals(shots)))
    return total, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--variants", default="fp32-100,fp32-200,bf16-200,bf16-400")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        clips = benchmark_set(Path(tmp), args.clips)
        frames = sum(t.num_frames for _, t in clips)
        print(f"{len(clips)} generated clips, {frames} frames, {sum(len(t.transitions) for _, t in clips)} transitions")
        print(f"{'variant':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'gradual ok':>10} {'net frames/s':>12}")
        for variant in args.variants.split(","):
            precision, window = variant.split("-")
            result, seconds = evaluate(clips, precision, int(window))
            print(
                f"{variant:<10} {result.precision:>9.3f} {result.recall:>7.3f} {result.f1:>6.3f} "
                f"{result.gradual_found_as_gradual:>4}/{result.gradual_true:<5} {frames / seconds:>12.0f}"
            )


if __name__ == "__main__":
    main()
