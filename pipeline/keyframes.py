"""Keyframes: the frames of a shot that the rest of the shot attends to most (pure numpy).

Inside a shot, the embedded frames attend to each other (``softmax(E E^T / tau)``, self
excluded); a frame's centrality is the attention it receives, summed over the other
frames (1.0 on average). A shot gets one keyframe plus one per ``seconds_per_keyframe``;
for coverage, the shot's frames are split into that many consecutive parts and each part
contributes its most central frame, unless it is nearly identical to a keyframe already
chosen (against redundancy).

A very long shot (a static camera for hours) is judged on an even subsample of its frames:
see :data:`MAX_CENTRALITY_CANDIDATES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.attention import attention_received
from pipeline.config import KeyframesConfig

#: Most frames of one shot that take part in the attention; a longer shot's candidates are an
#: even subsample of this many. Every frame attends to every other, so time grows with the
#: square of the count (memory does not: rows go in blocks). Measured on 2 CPU cores with
#: 1280-dim embeddings: 4,096 frames take 1.2 s (5 s with the cores shared), 8,000 take 4 s,
#: 100,000 (7 h of one static shot at 25 fps, stride 6) about 920 s per shot, timed on 12 row
#: blocks. 4,096 samples are 16 min of shot at that stride, longer than nearly any real shot;
#: above it candidates are 0.9 s apart per hour of shot, close enough to pick a keyframe.
MAX_CENTRALITY_CANDIDATES = 4096


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
    return attention_received(embeddings, temperature)


def candidate_pool(count: int, limit: int = MAX_CENTRALITY_CANDIDATES) -> np.ndarray:
    """Positions of the candidates that compete: all of them, or ``limit`` evenly spread from first to last."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def select_keyframes(
    frames: np.ndarray, embeddings: np.ndarray, duration_s: float, config: KeyframesConfig
) -> list[Keyframe]:
    """Keyframes of one shot from its embedded frames (``frames`` ascending, unit-norm ``embeddings``).

    Always at least one keyframe when there is at least one candidate.
    """
    if len(frames) == 0:
        return []
    pool = candidate_pool(len(frames))
    vectors = embeddings[pool] if len(pool) < len(frames) else embeddings
    scores = centrality(vectors, config.temperature)
    wanted = min(len(pool), config.max_per_shot, 1 + int(duration_s // config.seconds_per_keyframe))
    parts = np.array_split(np.arange(len(pool)), wanted)
    picks = sorted((int(part[np.argmax(scores[part])]) for part in parts), key=lambda i: -scores[i])
    chosen: list[int] = []
    for i in picks:  # most central first, so redundancy drops the weaker duplicate
        if chosen and float(np.max(vectors[chosen] @ vectors[i])) > config.redundancy_cosine:
            continue
        chosen.append(i)
    return [Keyframe(int(pool[i]), int(frames[pool[i]]), float(scores[i])) for i in sorted(chosen)]
