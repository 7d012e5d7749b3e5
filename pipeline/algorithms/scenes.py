"""Scenes: groups of consecutive shots, cut where no shot near a boundary attends across it.

Each shot is one vector, the unit-norm mean of its sampled frames' embeddings (what the
``shots`` table stores, so scenes can be derived again without decoding). For the boundary
after shot ``b``, the shots within ``window_shots`` on either side attend to each other:
``softmax(L / temperature)`` row by row, where ``L`` holds the shots' cosines except on the
diagonal, where a shot's logit for itself is ``reference_cosine`` (capped at its own squared
norm, which is 1 for any real shot). A shot therefore keeps its attention to itself unless
another shot of the window is more alike than the reference, and then gives it to the most
alike (with a small temperature, nearly all of it). The boundary's cohesion is the attention
that crosses it: the mean over each side's shots, then the mean of the two sides. A scene
starts after every boundary whose cohesion is below ``threshold``.

Why a reference and not the shot itself: a shot's cosine to itself is 1, while two shots of
one place are 0.4-0.9 alike on real footage, so with the true self-similarity a shot attends
almost only to itself and real scenes fall apart (on the real-footage scenes set that rule
found boundaries at precision 0.49). With the reference in its place:

* shots of one place, and a place seen again across one or two unrelated shots (an insert,
  shot/reverse-shot), attend across the boundaries between them, so they stay one scene,
  provided the place comes back within ``window_shots`` shots;
* unrelated shots (cosine below the reference) keep their attention, so each boundary
  between them has cohesion near 0 and starts a scene;
* identical shots share their attention evenly, so at least half of it crosses any boundary
  between them and they are never split by a threshold below 0.5.

The defaults were chosen on the real-footage scenes set (``benchmarks/scene_methods.py``:
an ablation of attention variants, per-video calibration, colour, and a global dynamic
programme; chosen by boundary F1 on all six videos and checked leave-one-video-out).
"""

from __future__ import annotations

import numpy as np

from pipeline.algorithms.attention import normalise, softmax_rows
from pipeline.config import ScenesConfig


def boundary_cohesion(
    shot_embeddings: np.ndarray, window_shots: int, temperature: float, reference_cosine: float
) -> np.ndarray:
    """Attention crossing each of the ``n - 1`` boundaries between ``n`` shots, in [0, 1].

    ``shot_embeddings`` are unit-norm (or zero, for a shot without an embedding).
    """
    count = len(shot_embeddings)
    cohesion = np.zeros(max(count - 1, 0))
    if count < 2:
        return cohesion
    vectors = np.asarray(shot_embeddings, dtype=np.float64)
    cosines = vectors @ vectors.T
    # A shot's logit for itself: the reference, but never above its similarity to an identical
    # shot (a zero vector is 0 alike to everything, itself included).
    self_logits = np.minimum(reference_cosine, np.diagonal(cosines))
    for b in range(count - 1):
        lo, hi = max(0, b - window_shots + 1), min(count, b + window_shots + 1)
        logits = cosines[lo:hi, lo:hi].copy()
        np.fill_diagonal(logits, self_logits[lo:hi])
        weights = softmax_rows(logits / temperature)
        split = b + 1 - lo  # rows/cols before the boundary
        # Each side's mean, then the mean of the sides: near either end of the video the window
        # is lopsided (1 shot against window_shots), and a mean over all its shots would let the
        # fuller side outvote the other.
        before = weights[:split, split:].sum(axis=1).mean()
        after = weights[split:, :split].sum(axis=1).mean()
        cohesion[b] = (before + after) / 2
    return cohesion


def scene_starts(shot_embeddings: np.ndarray, config: ScenesConfig) -> list[int]:
    """Indices of the shots that start a scene (always including 0 when there are shots)."""
    if len(shot_embeddings) == 0:
        return []
    cohesion = boundary_cohesion(
        normalise(np.asarray(shot_embeddings, dtype=np.float64)),
        config.window_shots,
        config.temperature,
        config.reference_cosine,
    )
    return [0] + [int(b) + 1 for b in np.flatnonzero(cohesion < config.threshold)]


def scene_ranges(shot_embeddings: np.ndarray, config: ScenesConfig) -> list[tuple[int, int]]:
    """(first_shot, last_shot) of every scene, in order, covering every shot once."""
    starts = scene_starts(shot_embeddings, config)
    ends = [s - 1 for s in starts[1:]] + [len(shot_embeddings) - 1]
    return list(zip(starts, ends))
