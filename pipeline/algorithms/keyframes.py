"""Keyframes: the frames of a shot that the rest of the shot attends to most (pure numpy).

Inside a shot, the embedded frames attend to each other (``softmax(E E^T / tau)``, self
excluded); a frame's centrality is the attention it receives, summed over the other
frames (1.0 on average). A shot gets one keyframe plus one per ``seconds_per_keyframe``;
for coverage, the shot's frames are split into that many consecutive parts and each part
contributes its most central frame, unless it is nearly identical to a keyframe already
chosen (against redundancy).

Not every frame may be a keyframe (:func:`fit_candidates`): mixed frames of a dissolve or
fade (the shot network's transition head is high on them), black frames and flashes are left
out, unless the shot has nothing else. Centrality is weighed with sharpness, so a slightly
less central but sharper frame wins over a blurred one.

A very long shot (a static camera for hours) is judged on an even subsample of its frames:
see :data:`MAX_CENTRALITY_CANDIDATES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.algorithms.attention import attention_received
from pipeline.config import KeyframesConfig

#: Most frames of one shot that take part in the attention; a longer shot's candidates are an
#: even subsample of this many. Every frame attends to every other, so time grows with the
#: square of the count (memory does not: rows go in blocks). Measured on 2 CPU cores with
#: 1280-dim embeddings: 4,096 frames take 1.2 s (5 s with the cores shared), 8,000 take 4 s,
#: 100,000 (7 h of one static shot at 25 fps, stride 6) about 920 s per shot, timed on 12 row
#: blocks. 4,096 samples are 16 min of shot at that stride, longer than nearly any real shot;
#: above it candidates are 0.9 s apart per hour of shot, close enough to pick a keyframe.
MAX_CENTRALITY_CANDIDATES = 4096
#: A frame is compared with the median luma of the frames this many either side of it: a
#: flash of up to 4 frames is a minority of those 9 frames, so their median is the light of
#: the shot around it, while a change of light that lasts (a lamp switched on) moves it too.
FLASH_NEIGHBOUR_FRAMES = 4
#: A frame is taken for a transition's mixed frame when the transition head is high this near
#: it: the head rises over several frames and lags the first blends of a long dissolve (hard set:
#: the 3rd frame of a 28-frame dissolve, a 10% blend, scored 0.05 and the frame after it 0.13).
MIXED_MARGIN_FRAMES = 2


@dataclass(frozen=True)
class Keyframe:
    #: Position in the candidate arrays given to :func:`select_keyframes`.
    candidate: int
    frame: int
    score: float


@dataclass(frozen=True)
class CandidateQuality:
    """What the shot network and the decode stage say about each candidate of one shot.

    One entry per candidate: the ``transition`` probability of the shot network's many-hot
    head near it (:func:`transition_nearby`; high on the mixed frames of a dissolve or fade); mean ``luma`` (0-255); whether it
    is a ``flash`` (:func:`flash_frames`); ``sharpness`` (variance of the Laplacian, comparable
    only within a video). The decode stage's measures may be missing (None): then only
    mixed frames are left out.
    """

    transition: np.ndarray
    luma: np.ndarray | None = None
    flash: np.ndarray | None = None
    sharpness: np.ndarray | None = None

    def __post_init__(self) -> None:
        sizes = {len(a) for a in (self.transition, self.luma, self.flash, self.sharpness) if a is not None}
        if len(sizes) != 1:
            raise ValueError(f"candidate quality arrays differ in length: {sorted(sizes)}")

    def at(self, positions: np.ndarray) -> CandidateQuality:
        """The entries of the candidates at ``positions``."""
        def take(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[positions]

        return CandidateQuality(self.transition[positions], take(self.luma), take(self.flash), take(self.sharpness))


def flash_frames(luma: np.ndarray, jump: float, neighbours: int = FLASH_NEIGHBOUR_FRAMES) -> np.ndarray:
    """Which frames of a video are flashes: brighter by ``jump`` than the median of the frames
    ``neighbours`` either side of them (``luma`` of every frame, in order)."""
    if len(luma) == 0:
        return np.zeros(0, bool)
    padded = np.pad(np.asarray(luma, np.float32), neighbours, mode="edge")
    around = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * neighbours + 1), axis=1)
    return np.asarray(luma > around + jump)


def transition_nearby(many: np.ndarray, margin: int = MIXED_MARGIN_FRAMES) -> np.ndarray:
    """Each frame's highest transition probability (many-hot head) within ``margin`` frames."""
    if len(many) == 0:
        return np.zeros(0, np.float32)
    padded = np.pad(np.asarray(many, np.float32), margin, mode="edge")
    nearby: np.ndarray = np.lib.stride_tricks.sliding_window_view(padded, 2 * margin + 1).max(axis=1)
    return nearby


def fit_candidates(quality: CandidateQuality, config: KeyframesConfig) -> np.ndarray:
    """Positions of the candidates fit to be keyframes: neither mixed, black nor a flash.

    Where none is, the rule is relaxed step by step (black allowed: a dark shot; then flashes;
    then the frames least likely to be in a transition, preferably neither black nor a flash),
    so a shot with any candidate always keeps some.
    """
    mixed = quality.transition > config.transition_probability
    none = np.zeros(len(mixed), bool)
    black = quality.luma < config.black_luma if quality.luma is not None else none
    flash = quality.flash.astype(bool) if quality.flash is not None else none
    for unfit in (mixed | black | flash, mixed | flash, mixed):
        fit = np.flatnonzero(~unfit)
        if len(fit):
            return fit
    for allowed in (~(black | flash), ~flash, ~none):
        if allowed.any():
            least = quality.transition[allowed].min()
            return np.flatnonzero(allowed & (quality.transition <= least))
    return np.zeros(0, np.int64)  # no candidate at all


def pick_in_part(scores: np.ndarray, sharpness: np.ndarray | None, weight: float) -> int:
    """Position of a part's keyframe: the best ``centrality x sharpness ** weight``; the most
    central where sharpness is unknown, ``weight`` is 0, or no frame has any detail."""
    if sharpness is None or weight <= 0 or float(sharpness.max()) <= 0:
        return int(np.argmax(scores))
    return int(np.argmax(scores * np.power(np.maximum(sharpness, 0.0), weight)))


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
    frames: np.ndarray,
    embeddings: np.ndarray,
    duration_s: float,
    config: KeyframesConfig,
    quality: CandidateQuality | None = None,
) -> list[Keyframe]:
    """Keyframes of one shot from its embedded frames (``frames`` ascending, unit-norm ``embeddings``).

    With ``quality``, only :func:`fit_candidates` compete (they alone attend to each other:
    a dissolve's mixed frames would otherwise look central to both shots' frames), and
    sharpness weighs in. Always at least one keyframe when there is a candidate.
    """
    if len(frames) == 0:
        return []
    fit = fit_candidates(quality, config) if quality is not None else np.arange(len(frames))
    pool = fit[candidate_pool(len(fit))]
    vectors = embeddings[pool] if len(pool) < len(frames) else embeddings
    sharpness = quality.sharpness[pool] if quality is not None and quality.sharpness is not None else None
    scores = centrality(vectors, config.temperature)
    wanted = min(len(pool), config.max_per_shot, 1 + int(duration_s // config.seconds_per_keyframe))
    parts = np.array_split(np.arange(len(pool)), wanted)
    picks = []
    for part in parts:
        part_sharpness = sharpness[part] if sharpness is not None else None
        picks.append(int(part[pick_in_part(scores[part], part_sharpness, config.sharpness_weight)]))
    picks.sort(key=lambda i: -scores[i])
    chosen: list[int] = []
    for i in picks:  # most central first, so redundancy drops the weaker duplicate
        if chosen and float(np.max(vectors[chosen] @ vectors[i])) > config.redundancy_cosine:
            continue
        chosen.append(i)
    return [Keyframe(int(pool[i]), int(frames[pool[i]]), float(scores[i])) for i in sorted(chosen)]
