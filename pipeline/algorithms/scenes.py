"""Scenes: groups of consecutive shots, cut where no shot near a boundary attends across it.

Each shot is one unit-norm vector, the mean of its sampled frames' embeddings, and one colour
histogram, the colours of its frames' coarse layouts (both stored in the ``shots`` table, so
scenes can be derived again without decoding). Two shots' similarity fuses the two:
``(1 - colour_weight) * cosine + colour_weight * histogram intersection``, the cosine taken
between the embeddings less the centre of the embedding space (:func:`centred`). For the boundary
after shot ``b``, the shots within ``window_shots`` on either side attend to each other:
``softmax(L / temperature)`` row by row, where ``L`` holds the shots' similarities except on
the diagonal, where a shot's logit for itself is ``reference_cosine`` (capped at its own
similarity, which is 1 for any real shot). A shot therefore keeps its attention to itself
unless another shot of the window is more alike than the reference, and then gives it to the
most alike. The boundary's cohesion is the attention that crosses it: the mean over each
side's shots, then the mean of the two sides. A scene starts after every boundary whose
cohesion is below ``threshold``.

Why a reference and not the shot itself: a shot's similarity to itself is 1, while two shots
of one place are 0.4-0.9 alike on real footage, so with the true self-similarity a shot
attends almost only to itself and real scenes fall apart. With the reference in its place:

* shots of one place, and a place seen again across an unrelated shot (an insert,
  shot/reverse-shot), attend across the boundaries between them, so they stay one scene,
  provided the place comes back within ``window_shots`` shots;
* unrelated shots (similarity below the reference) keep their attention, so each boundary
  between them has cohesion near 0 and starts a scene;
* identical shots share their attention evenly, so at least half of it crosses any boundary
  between them and they are never split by a threshold below 0.5.

Why a centre: every EfficientNet-Lite0 embedding shares a large part with every other (their
mean over the development sets has norm 0.59), so two unrelated places are 0.3-0.5 alike by the
plain cosine and another view of one place often no more; and low-resolution or dithered
footage adds a look of its own that every shot of the video shares. Less the mean of the
development sets' stored shot embeddings (``embedding_centre``, fitted by
``benchmarks/fit_embedding_centre.py``), unrelated places are near 0 and the cosine measures
what differs between two shots: on the look-alike set (``benchmarks/scenes_set2``), boundary
F1 0.816 -> 0.882 at one setting for all three development sets, and tuned on the other two
sets and scored on it 0.816 -> 0.845 (the centre, too, fitted on those two alone).

Why shrink within-scene directions: shots of one place differ most in a few directions of the
centred space (another zoom or framing, a face close up), so another view of a place can be
less alike than a look-alike neighbouring place. Those directions, fitted on the development
sets' true scenes (:mod:`pipeline.algorithms.within_scene`), are shrunk before the cosine: with
the other settings unchanged and the directions fitted on the other two sets, the look-alike
set's F1 0.879 -> 0.925, and on a held-out set fitted on none of it 0.919 -> 0.947.

Why colour: the embedding alone merges neighbouring places that look alike to an ImageNet
network (two car parks from above, two people before a grey wall) and low-resolution, dithered
footage, whose embeddings are close; their colours differ. The histogram counts the mean
colours of a frame's layout cells, so another framing of one place (a zoom, a pan) moves its
colours between cells but keeps them. Centred, the embedding needs little colour (0.05). The
defaults were chosen on three real-footage sets together (``benchmarks/scene_methods.py``:
colour fused or not, several frames per shot, a wider window, global segmentation, per-video
calibration, logistic fusion of pairwise features, the centre; tuned on all, checked
leave-one-set-out and leave-one-video-out; ``docs/scenes.md``).
"""

from __future__ import annotations

import numpy as np

from pipeline.algorithms.attention import normalise, softmax_rows
from pipeline.algorithms.embedding_centre import EMBEDDING_CENTRE
from pipeline.algorithms.frame_stats import LUMA_FULL_SCALE
from pipeline.algorithms.within_scene import shrink_within_scene
from pipeline.config import ScenesConfig

#: Levels per RGB channel of each shot's stored colour histogram: 4**3 = 64 bins.
COLOUR_LEVELS = 4


def colour_histogram(frame_colours: np.ndarray, levels: int = COLOUR_LEVELS) -> np.ndarray:
    """float32 [levels**3]: the share of a shot's colour-layout cells in each RGB bin.

    ``frame_colours`` is [frames, 3 * cells] on 0-255 (every frame's colour layout, the mean RGB
    of each cell of its 48x27 copy, which decoding measures anyway); every cell of every frame
    counts once, at the bin of its colour with ``levels`` levels per channel. The cells of one
    place keep their colours under another framing (a zoom moves them between cells, not between
    bins), and the histogram sums to 1 (all zeros for a shot without frames).
    """
    bins = levels**3
    cells = np.asarray(frame_colours, np.float32).reshape(-1, 3)
    if not len(cells):
        return np.zeros(bins, np.float32)
    level = np.clip((cells * (levels / (LUMA_FULL_SCALE + 1))).astype(np.int64), 0, levels - 1)
    codes = (level[:, 0] * levels + level[:, 1]) * levels + level[:, 2]
    histogram: np.ndarray = (np.bincount(codes, minlength=bins) / len(codes)).astype(np.float32)
    return histogram


def centred(shot_embeddings: np.ndarray, centre: np.ndarray = EMBEDDING_CENTRE) -> np.ndarray:
    """The shots' unit-norm embeddings less ``centre``, normalised again (float64).

    A shot without an embedding (a zero row) stays zero: it is alike to nothing. Embeddings of
    another width than the centre's (not EfficientNet-Lite0's) are returned as they are.
    """
    vectors = normalise(np.asarray(shot_embeddings, dtype=np.float64))
    if vectors.ndim != 2 or vectors.shape[1] != len(centre):
        return vectors
    known = np.linalg.norm(vectors, axis=1) > 0
    moved = np.where(known[:, None], vectors - np.asarray(centre, np.float64), 0.0)
    return normalise(moved)


def shot_similarity(
    shot_embeddings: np.ndarray,
    colour_histograms: np.ndarray | None,
    colour_weight: float,
    max_distance: int | None = None,
) -> np.ndarray:
    """Shot-by-shot similarity: ``(1 - colour_weight) * cosine + colour_weight * intersection``.

    The cosine is the embeddings' (unit-norm rows); the intersection is the shared share of two
    colour histograms (``sum(min(h_i, h_j))``, 0-1). A pair where either shot has no histogram
    (a zero row, or ``colour_histograms`` None) is compared by the cosine alone, and so is a
    pair more than ``max_distance`` shots apart (None: no limit), which the attention never
    reads: the intersections are taken one diagonal at a time, so memory stays that of the
    cosines, however many shots a video has.
    """
    vectors = np.asarray(shot_embeddings, dtype=np.float64)
    similarity: np.ndarray = vectors @ vectors.T
    count = len(vectors)
    if colour_histograms is None or colour_weight == 0 or count == 0:
        return similarity
    histograms = np.asarray(colour_histograms, dtype=np.float64)
    known = histograms.sum(axis=1) > 0
    for distance in range(0, count if max_distance is None else min(count, max_distance + 1)):
        first, second = np.arange(count - distance), np.arange(distance, count)
        shared = np.minimum(histograms[first], histograms[second]).sum(axis=1)
        both = known[first] & known[second]
        cosines = similarity[first, second]
        fused = np.where(both, (1 - colour_weight) * cosines + colour_weight * shared, cosines)
        similarity[first, second] = similarity[second, first] = fused
    return similarity


def boundary_cohesion(
    shot_embeddings: np.ndarray, window_shots: int, temperature: float, reference_cosine: float
) -> np.ndarray:
    """Attention crossing each of the ``n - 1`` boundaries between ``n`` shots, in [0, 1], by
    their embeddings' cosines alone (unit-norm, or zero for a shot without an embedding)."""
    vectors = np.asarray(shot_embeddings, dtype=np.float64)
    return attention_cohesion(vectors @ vectors.T, window_shots, temperature, reference_cosine)


def attention_cohesion(similarity: np.ndarray, window_shots: int, temperature: float, reference: float) -> np.ndarray:
    """Attention crossing each of the ``n - 1`` boundaries between ``n`` shots, in [0, 1], from
    their ``n x n`` similarity (:func:`shot_similarity`; a shot's own on the diagonal)."""
    count = len(similarity)
    cohesion = np.zeros(max(count - 1, 0))
    if count < 2:
        return cohesion
    cosines = np.asarray(similarity, dtype=np.float64)
    # A shot's logit for itself: the reference, but never above its similarity to an identical
    # shot (a zero vector is 0 alike to everything, itself included).
    self_logits = np.minimum(reference, np.diagonal(cosines))
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


def compared_embeddings(shot_embeddings: np.ndarray, config: ScenesConfig) -> np.ndarray:
    """The unit-norm vectors whose cosines scene grouping compares: the shots' embeddings
    :func:`centred` where ``config.centre_embeddings``, with their within-scene directions
    shrunk where ``config.shrink_within_scene`` too; otherwise as stored (float64)."""
    vectors = np.asarray(shot_embeddings, dtype=np.float64)
    if not config.centre_embeddings:
        return normalise(vectors)
    vectors = centred(vectors)
    return shrink_within_scene(vectors) if config.shrink_within_scene else vectors


def scene_starts(
    shot_embeddings: np.ndarray, config: ScenesConfig, colour_histograms: np.ndarray | None = None
) -> list[int]:
    """Indices of the shots that start a scene (always including 0 when there are shots).

    ``colour_histograms`` are the shots' :func:`colour_histogram` (None, or a zero row, where a
    shot has none: its pairs are compared by the embedding alone). The embeddings are
    :func:`centred` first where ``config.centre_embeddings``, and their within-scene directions
    shrunk (:func:`~pipeline.algorithms.within_scene.shrink_within_scene`) where
    ``config.shrink_within_scene`` too.
    """
    if len(shot_embeddings) == 0:
        return []
    # A window holds at most 2 * window_shots shots: no pair further apart is ever compared.
    similarity = shot_similarity(
        compared_embeddings(shot_embeddings, config),
        colour_histograms,
        config.colour_weight,
        max_distance=2 * config.window_shots - 1,
    )
    cohesion = attention_cohesion(similarity, config.window_shots, config.temperature, config.reference_cosine)
    return [0] + [int(b) + 1 for b in np.flatnonzero(cohesion < config.threshold)]


def scene_ranges(
    shot_embeddings: np.ndarray, config: ScenesConfig, colour_histograms: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """(first_shot, last_shot) of every scene, in order, covering every shot once."""
    starts = scene_starts(shot_embeddings, config, colour_histograms)
    ends = [s - 1 for s in starts[1:]] + [len(shot_embeddings) - 1]
    return list(zip(starts, ends))
