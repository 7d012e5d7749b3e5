"""Keyframes: the frames of a shot that the rest of the shot attends to most (pure numpy).

Inside a shot, the embedded frames attend to each other (``softmax(E E^T / tau)``, self
excluded); a frame's centrality is the attention it receives, summed over the other
frames (1.0 on average). A shot gets one keyframe plus one per ``seconds_per_keyframe``;
for coverage, the shot's frames are split into that many consecutive parts and each part
contributes its most central frame, unless it is nearly identical to a keyframe already
chosen (against redundancy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.attention import attention_weights
from pipeline.config import KeyframesConfig


@dataclass(frozen=True)
class Keyframe:
    #: Position in the candidate arrays given to :func:`select_keyframes`.
    candidate: int
    frame: int
    score: float


def centrality(embeddings: np.ndarray, temperature: float) -> np.ndarray:
    """Attention each frame receives from the other frames of the shot."""
    if len(embeddings) == 1:
        return np.ones(1)
    return attention_weights(embeddings, embeddings, temperature, mask_self=True).sum(axis=0)


def select_keyframes(
    frames: np.ndarray, embeddings: np.ndarray, duration_s: float, config: KeyframesConfig
) -> list[Keyframe]:
    """Keyframes of one shot from its embedded frames (``frames`` ascending, unit-norm ``embeddings``).

    Always at least one keyframe when there is at least one candidate.
    """
    if len(frames) == 0:
        return []
    scores = centrality(embeddings, config.temperature)
    wanted = min(len(frames), config.max_per_shot, 1 + int(duration_s // config.seconds_per_keyframe))
    parts = np.array_split(np.arange(len(frames)), wanted)
    picks = sorted((int(part[np.argmax(scores[part])]) for part in parts), key=lambda i: -scores[i])
    chosen: list[int] = []
    for i in picks:  # most central first, so redundancy drops the weaker duplicate
        if chosen and float(np.max(embeddings[chosen] @ embeddings[i])) > config.redundancy_cosine:
            continue
        chosen.append(i)
    return [Keyframe(i, int(frames[i]), float(scores[i])) for i in sorted(chosen)]
