"""Scores for scene segmentations and keyframes: pure functions over frame numbers and pixels.

A segmentation is a list of scenes, each ``(start_frame, end_frame)`` inclusive, in order,
tiling the video. Frames, not shots, are the unit throughout, so a segmentation built on
vindex's own shots and one built on the true shots are scored alike.

* Boundary precision / recall / F1: a boundary is the first frame of every scene but the
  first. A predicted boundary matches a true one at most ``tolerance_frames`` away, one to
  one (greedy in frame order, which is an optimal matching on a line with one tolerance).
* Coverage / overflow (Vendrig & Worring 2002, as used for scene detection by Baraldi et al.
  2015): coverage of a true scene is the largest share of it inside one predicted scene;
  overflow is how much the predicted scenes that overlap it spill outside it, relative to
  the length of its two neighbouring true scenes (capped at 1). Both are averaged over true
  scenes weighted by length, and ``F_CO = 2 C (1 - O) / (C + 1 - O)``.
* mIoU: each true scene's best intersection-over-union with a predicted scene, averaged.

Keyframes: whether they lie on blend frames of a gradual transition, on black frames
(mean luma below 16) or on flash frames, and their sharpness (variance of the Laplacian).
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.measure import PrecisionRecall

#: Frames of tolerance for a scene boundary (about half a second at 25 fps).
BOUNDARY_TOLERANCE_FRAMES = 12
#: Mean luma (0-255) below which a frame counts as black.
BLACK_LUMA = 16.0

Scene = tuple[int, int]


@dataclass(frozen=True)
class BoundaryCounts(PrecisionRecall):
    """Matched, predicted and true boundaries; add them up over videos for a total."""

    true_positives: int
    predicted: int
    actual: int

    def __add__(self, other: "BoundaryCounts") -> "BoundaryCounts":
        return BoundaryCounts(
            self.true_positives + other.true_positives, self.predicted + other.predicted, self.actual + other.actual
        )


def boundaries(scenes: Sequence[Scene]) -> list[int]:
    """First frames of every scene after the first."""
    return [start for start, _ in scenes[1:]]


def scenes_from_starts(starts: Iterable[int], num_frames: int) -> list[Scene]:
    """Scenes tiling ``[0, num_frames)`` that begin at ``starts`` (0 is added, duplicates dropped)."""
    ordered = sorted({0, *(int(s) for s in starts if 0 < s < num_frames)})
    ends = [s - 1 for s in ordered[1:]] + [num_frames - 1]
    return list(zip(ordered, ends))


def match_boundaries(truth: Sequence[int], predicted: Sequence[int], tolerance_frames: int = BOUNDARY_TOLERANCE_FRAMES) -> BoundaryCounts:
    """One-to-one matches of predicted to true boundaries at most ``tolerance_frames`` apart."""
    t, p = sorted(truth), sorted(predicted)
    i = j = matched = 0
    while i < len(t) and j < len(p):
        if abs(t[i] - p[j]) <= tolerance_frames:
            matched += 1
            i += 1
            j += 1
        elif p[j] < t[i]:
            j += 1
        else:
            i += 1
    return BoundaryCounts(matched, len(p), len(t))


def _length(scene: Scene) -> int:
    return scene[1] - scene[0] + 1


def _overlap(a: Scene, b: Scene) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)


@dataclass(frozen=True)
class CoverageOverflow:
    """Length-weighted coverage and overflow; sums kept so videos can be pooled."""

    coverage_sum: float
    overflow_sum: float
    frames: int

    def __add__(self, other: "CoverageOverflow") -> "CoverageOverflow":
        return CoverageOverflow(self.coverage_sum + other.coverage_sum, self.overflow_sum + other.overflow_sum, self.frames + other.frames)

    @property
    def coverage(self) -> float:
        return self.coverage_sum / self.frames if self.frames else 1.0

    @property
    def overflow(self) -> float:
        return self.overflow_sum / self.frames if self.frames else 0.0

    @property
    def f_co(self) -> float:
        c, o = self.coverage, self.overflow
        return 2 * c * (1 - o) / (c + 1 - o) if c + 1 - o else 0.0


def coverage_overflow(truth: Sequence[Scene], predicted: Sequence[Scene]) -> CoverageOverflow:
    """Coverage and overflow of ``predicted`` against ``truth`` (both tiling the same frames)."""
    coverage_sum = overflow_sum = 0.0
    frames = 0
    for k, scene in enumerate(truth):
        length = _length(scene)
        overlapping = [p for p in predicted if _overlap(p, scene)]
        coverage = max((_overlap(p, scene) for p in overlapping), default=0) / length
        neighbours = (_length(truth[k - 1]) if k > 0 else 0) + (_length(truth[k + 1]) if k + 1 < len(truth) else 0)
        spill = sum(_length(p) - _overlap(p, scene) for p in overlapping)
        overflow = min(1.0, spill / neighbours) if neighbours else 0.0
        coverage_sum += coverage * length
        overflow_sum += overflow * length
        frames += length
    return CoverageOverflow(coverage_sum, overflow_sum, frames)


def scene_ious(truth: Sequence[Scene], predicted: Sequence[Scene]) -> list[float]:
    """For each true scene, its best intersection-over-union with one predicted scene."""
    out = []
    for scene in truth:
        best = 0.0
        for p in predicted:
            inter = _overlap(p, scene)
            if inter:
                best = max(best, inter / (_length(p) + _length(scene) - inter))
        out.append(best)
    return out


def mean_iou(truth: Sequence[Scene], predicted: Sequence[Scene]) -> float:
    ious = scene_ious(truth, predicted)
    return float(np.mean(ious)) if ious else 1.0


# --- keyframes -----------------------------------------------------------------------------


def in_ranges(frames: Iterable[int], ranges: Iterable[tuple[int, int]]) -> int:
    """How many of ``frames`` fall inside any inclusive ``(first, last)`` range."""
    spans = list(ranges)
    return sum(any(a <= f <= b for a, b in spans) for f in frames)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (0-255, float) of uint8 RGB ``[..., 3]``."""
    # Integer weights, so a grey pixel's luma is its value exactly.
    return (rgb[..., :3].astype(np.int64) @ np.array([299, 587, 114])) / 1000.0


def is_black(rgb: np.ndarray, threshold: float = BLACK_LUMA) -> bool:
    return float(luma(rgb).mean()) < threshold


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a 2-D image: a sharpness figure."""
    g = gray.astype(np.float64)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())
