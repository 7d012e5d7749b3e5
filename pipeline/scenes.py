"""Scenes: groups of consecutive shots, cut where neighbouring shots stop attending to each other.

Each shot is represented by the mean of its frames' embeddings. For the boundary after
shot ``i``, the shots within ``window_shots`` on either side attend to each other and
to themselves (``softmax(S S^T / tau)``); the boundary's cohesion is the attention that
crosses it, averaged over each side's shots and then over the two sides (identical shots
give 0.5 however few shots one side has). A shot attends mostly to itself unless
a shot across the boundary looks alike, so cohesion is high inside a scene (the same place
seen again, shot/reverse-shot) and near zero between unrelated shots. A scene starts after every boundary whose cohesion is
below ``threshold``. (Requiring a local minimum as well would merge runs of unrelated
shots, whose boundaries are all near zero, into one scene.)
"""

from __future__ import annotations

import numpy as np

from pipeline.attention import attention_weights, normalise
from pipeline.config import ScenesConfig


def boundary_cohesion(shot_embeddings: np.ndarray, window_shots: int, temperature: float) -> np.ndarray:
    """Cross-attention across each of the ``n - 1`` boundaries between ``n`` shots, in [0, 1]."""
    count = len(shot_embeddings)
    cohesion = np.zeros(max(count - 1, 0))
    for b in range(count - 1):
        lo, hi = max(0, b - window_shots + 1), min(count, b + window_shots + 1)
        weights = attention_weights(shot_embeddings[lo:hi], shot_embeddings[lo:hi], temperature)
        split = b + 1 - lo  # rows/cols before the boundary
        # Each side's mean, then the mean of the sides: near either end of the video the window
        # is lopsided (1 shot against window_shots), and a mean over all its shots would rate
        # identical shots 2 * 1 * w / (1 + w)^2 (0.14 for w = 12, below the default threshold)
        # instead of the 0.5 they get wherever both sides are full.
        before = weights[:split, split:].sum(axis=1).mean()
        after = weights[split:, :split].sum(axis=1).mean()
        cohesion[b] = (before + after) / 2
    return cohesion


def scene_starts(shot_embeddings: np.ndarray, config: ScenesConfig) -> list[int]:
    """Indices of the shots that start a scene (always including 0 when there are shots)."""
    if len(shot_embeddings) == 0:
        return []
    cohesion = boundary_cohesion(normalise(shot_embeddings), config.window_shots, config.temperature)
    return [0] + [int(b) + 1 for b in np.flatnonzero(cohesion < config.threshold)]


def scene_ranges(shot_embeddings: np.ndarray, config: ScenesConfig) -> list[tuple[int, int]]:
    """(first_shot, last_shot) of every scene, in order, covering every shot once."""
    starts = scene_starts(shot_embeddings, config)
    ends = [s - 1 for s in starts[1:]] + [len(shot_embeddings) - 1]
    return list(zip(starts, ends))
