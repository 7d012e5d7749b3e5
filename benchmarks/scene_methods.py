"""Scene methods compared on every real-footage set, and the ablation table that chose one.

    python benchmarks/scene_methods.py [--per-video] [--sensitivity] [--dev-set DIR]
    python benchmarks/scene_methods.py --scenes-set-only    # the earlier table, one set
    python benchmarks/scene_methods.py --held-out [--family TEXT]    # the held-out sets
    python benchmarks/scene_methods.py --shrink-sweep    # how strongly to shrink within-scene directions

``--held-out`` (:func:`held_out_table`) scores each family on the held-out sets
(``benchmarks/scenes.py``'s ``HELD_OUT_SETS``) at the setting tuned or fitted on the
development sets pooled; the held-out videos never choose a setting (the "best F1" column,
the family's best on the held-out set itself, is only there to show what tuning on it would
have gained).

The default table (:func:`set_ablation`, :func:`fused_families`) scores each family on every
development set (``benchmarks/scenes.py``'s ``development_sets``: the committed sets and,
where present, scenes-dev, ``--dev-set``, default ``$VINDEX_SCENES_DEV`` or
``../shared/scenes-dev``, read in place; ``python benchmarks/scenes.py`` caches them all), on
vindex's own shots: per set at the one setting tuned on all sets pooled; leave-one-set-out
(tuned on all the other sets pooled, F1 on the held-out set); leave-one-video-out over all
the videos. Every (variant, threshold) point is scored on every video once, so each tuning
only sums counts. A family of one fixed setting has nothing to hold out ("-"). Then the
pipeline's rule around its defaults, one setting moved at a time, on all sets pooled.

Every method here is a ``benchmarks/scenes.py`` scene method,
``method(video, shots, threshold) -> indices of the shots that start a scene``, so any of
them can also be scored there (``python benchmarks/scenes.py --methods
scene_methods:reference_attention``). Most have more than one setting: a *family* is a list
of variants (one per combination of the other settings), each with a grid for ``threshold``;
tuning picks the best (variant, threshold) pair by pooled boundary F1 (ties: higher F_CO,
then the higher mean F1 of its neighbours on the threshold grid, then the first), and
leave-one-video-out (LOVO) picks it again on the other five videos for each held-out one.

The families (each shot is the unit-norm mean of its sampled frames' embeddings unless said):

1. ``today``: ``pipeline.algorithms.scenes`` as it was: within ``window`` shots each side of a
   boundary, shots attend to each other and to themselves (``softmax(S S^T / tau)``);
   cohesion is the attention crossing the boundary (mean over each side, then of the two
   sides); a scene starts where cohesion < threshold.
2. ``reference``: the same attention, but a shot's logit for itself is a reference cosine
   ``r`` instead of 1: a shot keeps its attention unless a neighbour is more alike than
   ``r``. (A shot is always identical to itself, so today's self logit of 1 outweighs any
   real neighbour, whose cosine is 0.4-0.9 on this footage.)
3. set-to-set attention over frames: ``frames_all``: every sampled frame of the window
   attends over all the window's frames (its own shot's included); ``frames_to_shots``:
   every frame attends over the *other* shots, each as a key whose logit is the soft maximum
   (log-mean-exp) of the frame's cosines to that shot's frames, plus the reference key.
4. calibrated per video: ``quantile_reference`` (``r`` = a quantile of the video's own
   adjacent-shot cosines), ``zscore_reference`` (``r`` = their mean + z std) and
   ``zscore_merge`` (a scene starts where an adjacent cosine's z-score is below z).
5. colour: ``colour_reference``: the reference attention over ``(1 - a) cos + a hist``,
   ``hist`` the intersection of the shots' mean 8x8x8 RGB histograms.
6. global segmentation (dynamic programming over all partitions into consecutive runs):
   ``dp_cosine`` maximises the sum over scenes of ``cos(i, j) - r`` over the pairs of shots
   of a scene at most ``window`` apart; ``dp_attention`` the same with the reference
   attention's symmetrised weights ``(A_ij + A_ji) / 2`` minus ``threshold`` per pair.

Baselines from ``benchmarks/scenes.py``: ``embedding_merge`` (adjacent cosine < threshold)
and ``histogram_merge``.

The three-set table (:func:`fused_families`) adds: colour fused with the embedding (8x8x8
sample histograms, the stored 4x4x4 and 3x3x3 layout histograms, a finer colour-weight grid,
the Bhattacharyya coefficient), several frames per shot (set-to-set cosines), a wider
window, global segmentation (dynamic programming, agglomerative grouping by average link),
per-video calibration (a quantile reference), and fitted families (:class:`Fitted`, fitted
again on the training videos alone for every held-out set or video): logistic fusion of
pairwise features of neighbouring shots (``pairwise_features``) and of the attention's
cohesions with the transition's length (``cohesion_features``), and the embeddings less the
mean shot embedding of the training videos (``centred_fit``), and those with the directions in
which one scene's shots differ shrunk (``shrunk_at_defaults_fit``, the pipeline's rule, whose
centre and directions ``benchmarks/fit_embedding_centre.py`` fits on all the sets; and
``whitened_fit``, its settings tuned again on cross-fitted training videos).
``--shrink-sweep`` (:func:`shrink_sweep`) compares how strongly to shrink.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import functools
import glob
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import scenes as bench
from benchmarks.measure import machine_header
from benchmarks.scene_metrics import BOUNDARY_TOLERANCE_FRAMES

from pipeline.algorithms.attention import softmax_rows
from pipeline.algorithms.scenes import centred
from pipeline.algorithms.within_scene import FIT_DIRECTIONS, FIT_STRENGTH, WithinScene, fit_within_scene, shrink_within_scene

SceneMethod = Callable[[bench.CachedVideo, np.ndarray, float], Sequence[int]]

COHESION_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
REFERENCES = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
TEMPERATURES = (0.02, 0.05, 0.1)
WINDOWS = (1, 2, 3)


# --- per-shot data ------------------------------------------------------------------------


def _key(video: bench.CachedVideo, shots: np.ndarray) -> tuple[str, bytes]:
    return video.name, np.ascontiguousarray(shots).tobytes()


_EMBEDDINGS: dict[tuple[str, bytes], np.ndarray] = {}


def shot_means(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """One unit-norm mean embedding per shot: what the ``shots`` table stores."""
    key = _key(video, shots)
    if key not in _EMBEDDINGS:
        _EMBEDDINGS[key] = video.shot_embeddings(shots)
    return _EMBEDDINGS[key]


def starts_below(cohesion: np.ndarray, threshold: float) -> list[int]:
    return [0] + [int(b) + 1 for b in np.flatnonzero(cohesion < threshold)]


# --- attention across boundaries ----------------------------------------------------------


def window_cohesion(similarity: np.ndarray, window: int, temperature: float, self_logit: float | None) -> np.ndarray:
    """Attention crossing each boundary, from a shot-by-shot similarity matrix.

    ``self_logit`` replaces each shot's similarity to itself (None keeps the diagonal).
    """
    count = len(similarity)
    cohesion = np.zeros(max(count - 1, 0))
    for b in range(count - 1):
        lo, hi = max(0, b - window + 1), min(count, b + window + 1)
        logits = similarity[lo:hi, lo:hi].copy()
        if self_logit is not None:
            np.fill_diagonal(logits, self_logit)
        weights = softmax_rows(logits / temperature)
        split = b + 1 - lo
        cohesion[b] = (weights[:split, split:].sum(axis=1).mean() + weights[split:, :split].sum(axis=1).mean()) / 2
    return cohesion


@functools.cache
def _cached_cohesion(name: str, shots_bytes: bytes, kind: str, params: tuple) -> np.ndarray:
    video, shots = _CONTEXT[(name, shots_bytes)]
    return COHESIONS[kind](video, shots, *params)


_CONTEXT: dict[tuple[str, bytes], tuple[bench.CachedVideo, np.ndarray]] = {}


def cohesion_of(kind: str, video: bench.CachedVideo, shots: np.ndarray, params: tuple) -> np.ndarray:
    key = _key(video, shots)
    _CONTEXT[key] = (video, shots)
    return _cached_cohesion(key[0], key[1], kind, params)


def _today(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float) -> np.ndarray:
    e = shot_means(video, shots)
    return window_cohesion(e @ e.T, window, temperature, None)


def _reference(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float, reference: float) -> np.ndarray:
    e = shot_means(video, shots)
    return window_cohesion(e @ e.T, window, temperature, reference)


def _adjacent_cosines(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    e = shot_means(video, shots)
    return (e[:-1] * e[1:]).sum(axis=1)


def _quantile_reference(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float, quantile: float) -> np.ndarray:
    cosines = _adjacent_cosines(video, shots)
    reference = float(np.quantile(cosines, quantile)) if len(cosines) else 1.0
    return _reference(video, shots, window, temperature, reference)


def _zscore_reference(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float, z: float) -> np.ndarray:
    cosines = _adjacent_cosines(video, shots)
    reference = float(cosines.mean() + z * cosines.std()) if len(cosines) else 1.0
    return _reference(video, shots, window, temperature, reference)


def _colour_reference(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float, reference: float,
                      colour_weight: float) -> np.ndarray:
    e = shot_means(video, shots)
    h = video.shot_histograms(shots).astype(np.float64)
    intersection = np.minimum(h[:, None, :], h[None, :, :]).sum(axis=2)
    similarity = (1 - colour_weight) * (e @ e.T) + colour_weight * intersection
    return window_cohesion(similarity, window, temperature, reference)


def _frames_all(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float) -> np.ndarray:
    """Every sampled frame of the window attends over all of the window's frames."""
    samples = video.shot_samples(shots)
    count = len(shots)
    cohesion = np.zeros(max(count - 1, 0))
    for b in range(count - 1):
        lo, hi = max(0, b - window + 1), min(count, b + window + 1)
        frames = np.concatenate([samples[s] for s in range(lo, hi)])
        owner = np.concatenate([np.full(len(samples[s]), s) for s in range(lo, hi)])
        f = video.embeddings[frames].astype(np.float64)
        weights = softmax_rows(f @ f.T / temperature)
        across = np.where((owner <= b)[:, None], weights * (owner > b)[None, :], weights * (owner <= b)[None, :]).sum(axis=1)
        per_shot = np.array([across[owner == s].mean() for s in range(lo, hi)])
        split = b + 1 - lo
        cohesion[b] = (per_shot[:split].mean() + per_shot[split:].mean()) / 2
    return cohesion


def _frames_to_shots(video: bench.CachedVideo, shots: np.ndarray, window: int, temperature: float, reference: float) -> np.ndarray:
    """Every sampled frame attends over the other shots of the window (each a soft maximum over
    its frames) and a reference key; a shot's crossing is the mean over its frames."""
    samples = video.shot_samples(shots)
    count = len(shots)
    cohesion = np.zeros(max(count - 1, 0))
    for b in range(count - 1):
        lo, hi = max(0, b - window + 1), min(count, b + window + 1)
        frames = [video.embeddings[samples[s]].astype(np.float64) for s in range(lo, hi)]
        per_shot = []
        for i, queries in enumerate(frames):
            logits = np.empty((len(queries), hi - lo))
            for j, keys in enumerate(frames):
                if i == j:
                    logits[:, j] = reference / temperature
                else:
                    scaled = queries @ keys.T / temperature
                    peak = scaled.max(axis=1, keepdims=True)
                    logits[:, j] = (peak + np.log(np.exp(scaled - peak).mean(axis=1, keepdims=True)))[:, 0]
            weights = softmax_rows(logits)
            other_side = np.arange(lo, hi) > b if lo + i <= b else np.arange(lo, hi) <= b
            per_shot.append(weights[:, other_side].sum(axis=1).mean())
        split = b + 1 - lo
        cohesion[b] = (np.mean(per_shot[:split]) + np.mean(per_shot[split:])) / 2
    return cohesion


COHESIONS: dict[str, Callable[..., np.ndarray]] = {
    "today": _today,
    "reference": _reference,
    "quantile_reference": _quantile_reference,
    "zscore_reference": _zscore_reference,
    "colour_reference": _colour_reference,
    "frames_all": _frames_all,
    "frames_to_shots": _frames_to_shots,
}


def cohesion_method(kind: str, params: tuple, thresholds: Sequence[float], label: str) -> SceneMethod:
    """A scene method: a scene starts where the ``kind`` cohesion (at ``params``) < threshold."""

    def method(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
        return starts_below(cohesion_of(kind, video, shots, params), threshold)

    method.__name__ = label
    method.thresholds = tuple(thresholds)  # type: ignore[attr-defined]
    method.params = tuple(params)  # type: ignore[attr-defined]
    return method


# --- calibrated merge and global segmentation ---------------------------------------------


def zscore_merge(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
    """A scene starts where the adjacent cosine's z-score within the video is below ``threshold``."""
    cosines = _adjacent_cosines(video, shots)
    if len(cosines) < 2 or cosines.std() == 0:
        return [0]
    return starts_below((cosines - cosines.mean()) / cosines.std(), threshold)


zscore_merge.thresholds = tuple(np.round(np.arange(-2.0, 0.01, 0.1), 2))  # type: ignore[attr-defined]


def segment_by_pair_gain(gain: np.ndarray, window: int) -> list[int]:
    """Starts of the partition into runs of consecutive shots that maximises the summed
    ``gain[i, j]`` over the pairs of one run at most ``window`` apart (exact, by dynamic
    programming; ties: fewer scenes)."""
    count = len(gain)
    if count == 0:
        return []
    best = np.full(count + 1, -np.inf)
    best[0] = 0.0
    back = np.zeros(count + 1, np.int64)
    for end in range(1, count + 1):  # scene = shots [start, end)
        inside = 0.0
        for start in range(end - 1, -1, -1):
            # adding shot `start` to the run [start + 1, end): its pairs within the window
            inside += gain[start, start + 1 : min(end, start + window + 1)].sum()
            value = best[start] + inside
            if value > best[end] + 1e-12:
                best[end], back[end] = value, start
    starts, end = [], count
    while end > 0:
        starts.append(int(back[end]))
        end = int(back[end])
    return sorted(starts)


def _dp_method(kind: str, window: int, temperature: float, reference: float, thresholds: Sequence[float], label: str) -> SceneMethod:
    def method(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
        e = shot_means(video, shots)
        similarity = e @ e.T
        if kind == "cosine":
            gain = similarity - threshold
        else:
            count = len(e)
            weights = np.zeros((count, count))
            for i in range(count):
                lo, hi = max(0, i - window), min(count, i + window + 1)
                logits = similarity[i, lo:hi].copy()
                logits[i - lo] = reference
                weights[i, lo:hi] = softmax_rows(logits[None, :] / temperature)[0]
            gain = (weights + weights.T) / 2 - threshold
        return segment_by_pair_gain(gain, window)

    method.__name__ = label
    method.thresholds = tuple(thresholds)  # type: ignore[attr-defined]
    return method


# --- colour beside the embedding ----------------------------------------------------------

COLOUR_WEIGHTS = (0.25, 0.4, 0.5, 0.6, 0.75)
#: The finer grid the three-set defaults were chosen on.
FINE_COLOUR_WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
FUSED_REFERENCES = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
_LAYOUT: dict[tuple[str, bytes, int], np.ndarray] = {}


def layout_histograms(video: bench.CachedVideo, shots: np.ndarray, levels: int = 4) -> np.ndarray:
    """Per shot, the colour histogram the pipeline stores (``scenes.colour_histogram`` of the
    decode stage's colour layouts over the shot's frames)."""
    from pipeline.algorithms.scenes import colour_histogram

    key = (*_key(video, shots), levels)
    if key not in _LAYOUT:
        _LAYOUT[key] = np.array([colour_histogram(video.frame_colours[a : b + 1], levels) for a, b in shots])
    return _LAYOUT[key]


def intersections(histograms: np.ndarray) -> np.ndarray:
    h = np.asarray(histograms, np.float64)
    return np.minimum(h[:, None, :], h[None, :, :]).sum(axis=2)


_SIMILARITIES: dict[tuple[str, bytes, str], np.ndarray] = {}


def colour_similarity(video: bench.CachedVideo, shots: np.ndarray, colour: str) -> np.ndarray:
    key = (*_key(video, shots), colour)
    if key not in _SIMILARITIES:
        _SIMILARITIES[key] = _colour_similarity(video, shots, colour)
    return _SIMILARITIES[key]


def _colour_similarity(video: bench.CachedVideo, shots: np.ndarray, colour: str) -> np.ndarray:
    """Shot-by-shot colour similarity: ``samples512`` the intersection of the mean 8x8x8 RGB
    histograms of the sampled 256x144 frames (the baseline's); ``layout<L>`` that of the
    stored per-shot histogram at L levels per channel; ``bhattacharyya<L>`` the Bhattacharyya
    coefficient of the stored histograms (``sum(sqrt(h_i * h_j))``)."""
    if colour == "samples512":
        return intersections(video.shot_histograms(shots))
    if colour.startswith("bhattacharyya"):
        roots = np.sqrt(layout_histograms(video, shots, int(colour.removeprefix("bhattacharyya"))).astype(np.float64))
        return roots @ roots.T
    return intersections(layout_histograms(video, shots, int(colour.removeprefix("layout"))))


def set_cosines(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """Set-to-set similarity over several frames per shot: each sampled frame's best cosine to
    the other shot's frames, averaged over its shot, then the mean of the two directions."""
    key = (*_key(video, shots), "sets")
    if key in _SIMILARITIES:
        return _SIMILARITIES[key]
    samples = video.shot_samples(shots)
    frames = [video.embeddings[i].astype(np.float64) for i in samples]
    count = len(shots)
    out = _SIMILARITIES[key] = np.ones((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            c = frames[i] @ frames[j].T
            out[i, j] = out[j, i] = (c.max(axis=1).mean() + c.max(axis=0).mean()) / 2
    return out


def fused_similarity(video: bench.CachedVideo, shots: np.ndarray, colour: str, colour_weight: float,
                     frames: str = "mean") -> np.ndarray:
    e = shot_means(video, shots)
    embedding = e @ e.T if frames == "mean" else set_cosines(video, shots)
    return (1 - colour_weight) * embedding + colour_weight * colour_similarity(video, shots, colour)


def _fused_reference(video: bench.CachedVideo, shots: np.ndarray, colour: str, frames: str, window: int, temperature: float,
                     reference: float, colour_weight: float) -> np.ndarray:
    return window_cohesion(fused_similarity(video, shots, colour, colour_weight, frames), window, temperature, reference)


def _fused_quantile(video: bench.CachedVideo, shots: np.ndarray, colour: str, window: int, temperature: float,
                    quantile: float, colour_weight: float) -> np.ndarray:
    """Per-video calibration: the reference is a quantile of the video's own adjacent fused similarities."""
    similarity = fused_similarity(video, shots, colour, colour_weight)
    adjacent = np.diagonal(similarity, 1)
    reference = float(np.quantile(adjacent, quantile)) if len(adjacent) else 1.0
    return window_cohesion(similarity, window, temperature, reference)


def _pipeline(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """The pipeline's own cohesion at its defaults (what ``scene_starts`` thresholds)."""
    from pipeline.algorithms.scenes import COLOUR_LEVELS, attention_cohesion, compared_embeddings, shot_similarity
    from pipeline.config import ScenesConfig

    config = ScenesConfig()
    embeddings = compared_embeddings(shot_means(video, shots), config)
    similarity = shot_similarity(embeddings, layout_histograms(video, shots, COLOUR_LEVELS), config.colour_weight)
    return attention_cohesion(similarity, config.window_shots, config.temperature, config.reference_cosine)


COHESIONS.update({"fused_reference": _fused_reference, "fused_quantile": _fused_quantile, "pipeline": _pipeline})


def _dp_fused(colour: str, window: int, colour_weight: float, thresholds: Sequence[float], label: str) -> SceneMethod:
    """Global segmentation: the partition maximising the summed ``fused - threshold`` over the
    pairs of shots of one scene at most ``window`` apart."""

    def method(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
        return segment_by_pair_gain(fused_similarity(video, shots, colour, colour_weight) - threshold, window)

    method.__name__ = label
    method.thresholds = tuple(thresholds)  # type: ignore[attr-defined]
    return method


def fused_families() -> dict[str, "list[SceneMethod] | Fitted"]:
    """The families of the ablation over every set (each shot: the stored mean embedding unless said)."""
    fused = {"window": (1, 2, 3), "temperature": (0.02, 0.05), "reference": FUSED_REFERENCES, "colour_weight": COLOUR_WEIGHTS}
    fine = {"window": (1, 2, 3), "temperature": (0.02, 0.05), "reference": (0.4, 0.45, 0.5, 0.55, 0.6),
            "colour_weight": FINE_COLOUR_WEIGHTS}
    agglomerative = []
    for k, a in enumerate((0.0, 0.1, 0.25)):
        method = _agglomerative("layout4", a, tuple(np.round(np.arange(0.3, 0.7, 0.02), 3)), f"agglomerative(colour_weight={a:g})")
        method.coords = (k,)  # type: ignore[attr-defined]
        agglomerative.append(method)
    dp = []
    for coords in itertools.product(range(3), range(len(COLOUR_WEIGHTS))):
        w, a = (1, 2, 3)[coords[0]], COLOUR_WEIGHTS[coords[1]]
        method = _dp_fused("layout4", w, a, tuple(np.round(np.arange(0.3, 0.86, 0.025), 3)), f"dp_fused(window={w}, colour_weight={a:g})")
        method.coords = coords  # type: ignore[attr-defined]
        dp.append(method)
    return {
        "(0) colour-histogram merge (8x8x8, samples)": [bench.histogram_merge],
        "(0) cosine merge (adjacent cosine)": [bench.embedding_merge],
        "(1) reference attention, embedding only, first defaults": [cohesion_method("reference", (3, 0.02, 0.45), (0.05,), "first defaults")],
        "(1) reference attention, tuned": _grid("reference", REFERENCE_GRID, COHESION_THRESHOLDS),
        "(2) + colour: 8x8x8 sample histograms": _grid("fused_reference", {"colour": ("samples512",), "frames": ("mean",), **fused},
                                                       COHESION_THRESHOLDS),
        "(2) + colour: stored 4x4x4 layout histogram": _grid("fused_reference", {"colour": ("layout4",), "frames": ("mean",), **fused},
                                                             COHESION_THRESHOLDS),
        "(2) + colour: stored 3x3x3 layout histogram": _grid("fused_reference", {"colour": ("layout3",), "frames": ("mean",), **fused},
                                                             COHESION_THRESHOLDS),
        "(3) + several frames: set-to-set cosine": _grid("fused_reference", {"colour": ("layout4",), "frames": ("sets",), **fused},
                                                         COHESION_THRESHOLDS),
        "(4) + wider context: window 4-6": _grid("fused_reference", {"colour": ("layout4",), "frames": ("mean",),
                                                                     **fused, "window": (4, 5, 6)}, COHESION_THRESHOLDS),
        "(5) + global segmentation (DP over fused)": dp,
        "(6) + per-video reference (quantile)": _grid("fused_quantile", {"colour": ("layout4",), "window": (1, 2, 3),
                                                                          "temperature": (0.02, 0.05), "quantile": (0.2, 0.3, 0.4, 0.5),
                                                                          "colour_weight": COLOUR_WEIGHTS}, COHESION_THRESHOLDS),
        "(7) + colour weight 0.05-0.4": _grid("fused_reference", {"colour": ("layout4",), "frames": ("mean",), **fine},
                                                      COHESION_THRESHOLDS),
        "(7) + colour weight 0.05-0.4, Bhattacharyya": _grid("fused_reference", {"colour": ("bhattacharyya4",), "frames": ("mean",),
                                                                                 **fine}, COHESION_THRESHOLDS),
        "(8) agglomerative, average link over fused": agglomerative,
        "(9) logistic fusion of pairwise features": Fitted(logistic_fit(pairwise_features, "logistic(pairwise)")),
        "(9) logistic fusion of cohesions + transition": Fitted(logistic_fit(cohesion_features, "logistic(cohesions, transition)")),
        "(10) + centred embeddings": Fitted(centred_fit),
        "(11) + within-scene directions shrunk, tuned cross-fitted": Fitted(whitened_fit),
        "(11) + within-scene directions shrunk (chosen)": Fitted(shrunk_at_defaults_fit),
        "vindex before: the two-set defaults": [cohesion_method("reference_fused_fixed", (0.55, 0.25), (0.15,), "two-set defaults")],
        "vindex now: pipeline defaults": [cohesion_method("pipeline", (), (_default_threshold(),), "pipeline defaults")],
    }


def _reference_fused_fixed(video: bench.CachedVideo, shots: np.ndarray, reference: float, colour_weight: float) -> np.ndarray:
    """The pipeline's rule at window 2, temperature 0.05 and the given reference and colour weight."""
    return _fused_reference(video, shots, "layout4", "mean", 2, 0.05, reference, colour_weight)


COHESIONS["reference_fused_fixed"] = _reference_fused_fixed


def _agglomerative(colour: str, colour_weight: float, thresholds: Sequence[float], label: str) -> SceneMethod:
    """Bottom-up: every shot a scene, then the two neighbouring scenes whose shots are most
    alike on average (fused similarity over every pair across them) are joined, until no
    neighbouring pair is ``threshold`` alike."""

    def method(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
        similarity = fused_similarity(video, shots, colour, colour_weight)
        scenes = [[i] for i in range(len(shots))]
        while len(scenes) > 1:
            links = [similarity[np.ix_(scenes[k], scenes[k + 1])].mean() for k in range(len(scenes) - 1)]
            k = int(np.argmax(links))
            if links[k] < threshold:
                break
            scenes[k] += scenes.pop(k + 1)
        return [scene[0] for scene in scenes]

    method.__name__ = label
    method.thresholds = tuple(thresholds)  # type: ignore[attr-defined]
    return method


# --- fitted fusion: a small logistic model over each boundary's features -------------------

#: Ridge penalty of the logistic fit (on standardised features) and the decision grid its
#: probability is cut at (picked on the training videos, like a threshold).
LOGISTIC_L2 = 1.0
DECISION_PROBABILITIES = (0.3, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class Fitted:
    """A family whose setting is fitted rather than picked from a grid: ``fit(videos)`` returns
    a scene method and its threshold, fitted on those videos alone (so leave-one-set-out and
    leave-one-video-out fit again without the held-out ones)."""

    fit: Callable[[Sequence[bench.CachedVideo]], tuple[SceneMethod, float]]


def boundary_labels(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """bool [shots - 1]: whether a true scene boundary lies within the boundary tolerance of the
    middle of the frames between two neighbouring shots (where a predicted boundary is put)."""
    truth = np.array([start for start, _ in video.true_scenes[1:]], np.int64)
    middles = (shots[:-1, 1] + 1 + shots[1:, 0]) // 2
    if not len(truth):
        return np.zeros(len(middles), bool)
    return np.abs(middles[:, None] - truth[None, :]).min(axis=1) <= BOUNDARY_TOLERANCE_FRAMES


def _shot_brightness(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """Each shot's mean luma, 0-1, from its frames' colour layouts (what ``shots.brightness``
    measures on the 48x27 copy, up to the layout's cells being means)."""
    from pipeline.algorithms.frame_stats import LUMA_FULL_SCALE, LUMA_WEIGHTS

    cells = video.frame_colours.reshape(len(video.frame_colours), -1, 3)
    return np.array([float((cells[a : b + 1] @ LUMA_WEIGHTS).mean()) / LUMA_FULL_SCALE for a, b in shots])


def _across(similarity: np.ndarray, boundary: int, window: int) -> float:
    """The largest similarity between a shot before ``boundary`` and one after, within ``window``."""
    lo, hi = max(0, boundary - window + 1), min(len(similarity), boundary + window + 1)
    return float(similarity[lo : boundary + 1, boundary + 1 : hi].max())


def pairwise_features(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """float [shots - 1, 11] per boundary, from stored signals only: the neighbours' cosine,
    histogram intersection, Bhattacharyya coefficient, chi-square distance and brightness
    difference; the largest cosine and intersection across the boundary within 2 and 3 shots;
    the cosine and intersection less the video's median over neighbouring shots."""
    e = shot_means(video, shots)
    cosine = e @ e.T
    h = layout_histograms(video, shots, 4).astype(np.float64)
    intersection = intersections(h)
    roots = np.sqrt(h)
    brightness = _shot_brightness(video, shots)
    count = len(shots)
    if count < 2:
        return np.zeros((0, 11))
    adjacent_cosine, adjacent_intersection = np.diagonal(cosine, 1), np.diagonal(intersection, 1)
    rows = []
    for b in range(count - 1):
        first, second = h[b], h[b + 1]
        chi_square = 0.5 * float(((first - second) ** 2 / np.maximum(first + second, 1e-12)).sum())
        rows.append([
            cosine[b, b + 1], intersection[b, b + 1], float(roots[b] @ roots[b + 1]), chi_square,
            abs(brightness[b] - brightness[b + 1]),
            _across(cosine, b, 2), _across(cosine, b, 3), _across(intersection, b, 2), _across(intersection, b, 3),
            cosine[b, b + 1] - np.median(adjacent_cosine), intersection[b, b + 1] - np.median(adjacent_intersection),
        ])
    return np.array(rows)


def cohesion_features(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """float [shots - 1, 6] per boundary: the reference attention's cohesion at three settings
    (colour 0.1 and reference 0.5; colour 0.25 and reference 0.55; window 3), the neighbours'
    cosine and intersection, and the frames between them (a gradual transition's length,
    capped at 20, in tens)."""
    if len(shots) < 2:
        return np.zeros((0, 6))
    e = shot_means(video, shots)
    intersection = intersections(layout_histograms(video, shots, 4))
    gap = np.minimum(shots[1:, 0] - shots[:-1, 1] - 1, 20) / 10
    return np.column_stack([
        cohesion_of("fused_reference", video, shots, ("layout4", "mean", 2, 0.05, 0.5, 0.1)),
        cohesion_of("fused_reference", video, shots, ("layout4", "mean", 2, 0.05, 0.55, 0.25)),
        cohesion_of("fused_reference", video, shots, ("layout4", "mean", 3, 0.05, 0.5, 0.1)),
        (e[:-1] * e[1:]).sum(axis=1), np.diagonal(intersection, 1), gap,
    ])


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = LOGISTIC_L2) -> np.ndarray:
    """Weights (last: the bias) of a ridge-penalised logistic regression on the features as
    given (standardised inside, returned for the raw features), by Newton's method."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    x = np.column_stack([(features - mean) / scale, np.ones(len(features))])
    penalty = l2 * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        step = np.linalg.solve(x.T @ (x * (p * (1 - p))[:, None]) + penalty, x.T @ (p - labels) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return np.concatenate([w[:-1] / scale, [w[-1] - (w[:-1] * mean / scale).sum()]])


def logistic_fit(features: Callable[[bench.CachedVideo, np.ndarray], np.ndarray], label: str
                 ) -> Callable[[Sequence[bench.CachedVideo]], tuple[SceneMethod, float]]:
    """Fit on the videos' own shots and truth: a scene starts where the boundary's fitted
    probability of being a scene boundary is above the decision threshold (picked by pooled F1
    on the same videos)."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]

    def fit(videos: Sequence[bench.CachedVideo]) -> tuple[SceneMethod, float]:
        x = np.vstack([features(v, shots_of(v)) for v in videos])
        y = np.concatenate([boundary_labels(v, shots_of(v)) for v in videos]).astype(np.float64)
        weights = fit_logistic(x, y)

        def method(video: bench.CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
            probability = 1 / (1 + np.exp(-(features(video, shots) @ weights[:-1] + weights[-1])))
            return [0] + [int(b) + 1 for b in np.flatnonzero(probability > threshold)]

        method.__name__ = f"{label} w={np.array2string(weights, precision=2, max_line_width=10**4)}"
        best = max(DECISION_PROBABILITIES,
                   key=lambda t: bench.total(bench.evaluate(method, videos, shots_of, t)).boundaries.f1)
        return method, float(best)

    return fit


#: Centres of the embedding space by name (the mean stored shot embedding of some videos),
#: for :func:`_centred_reference`; a name keys the cohesion cache, so each centre has its own.
_CENTRES: dict[str, np.ndarray] = {}
CENTRED_GRID = {"window": (2,), "temperature": (0.02, 0.05), "reference": (0.15, 0.2, 0.25, 0.3), "colour_weight": (0.05, 0.1, 0.2)}


def _centred_reference(video: bench.CachedVideo, shots: np.ndarray, centre: str, window: int, temperature: float,
                       reference: float, colour_weight: float) -> np.ndarray:
    """The reference attention over ``(1 - a) cos + a hist``, the cosine taken between the
    shots' embeddings less ``centre`` (what every shot of the training videos shares: the look
    of the network's features, not of a place)."""
    e = shot_means(video, shots) - _CENTRES[centre]
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    similarity = (1 - colour_weight) * (e @ e.T) + colour_weight * colour_similarity(video, shots, "layout4")
    return window_cohesion(similarity, window, temperature, reference)


COHESIONS["centred_reference"] = _centred_reference


def centred_fit(videos: Sequence[bench.CachedVideo]) -> tuple[SceneMethod, float]:
    """Centre on the training videos' shots, then tune :data:`CENTRED_GRID` on them."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    name = ",".join(sorted(v.name for v in videos))
    _CENTRES[name] = np.concatenate([shot_means(v, shots_of(v)) for v in videos]).mean(axis=0)
    variants = _grid("centred_reference", {"centre": (name,), **CENTRED_GRID}, COHESION_THRESHOLDS)
    choice = tune_family(variants, videos, shots_of)
    choice.method.__name__ = choice.method.__name__.replace(name, f"mean of {len(videos)} videos")
    return choice.method, choice.threshold


#: Fitted centres and within-scene directions by name, for :func:`_whitened_reference`.
_PROJECTIONS: dict[str, "tuple[np.ndarray, WithinScene] | dict[str, tuple[np.ndarray, WithinScene]]"] = {}


def true_scene_of_shots(video: bench.CachedVideo, shots: np.ndarray) -> np.ndarray:
    """int [shots]: the true scene holding each shot's middle frame."""
    starts = np.array([start for start, _ in video.true_scenes], np.int64)
    middles = (shots[:, 0] + shots[:, 1]) // 2
    return np.searchsorted(starts, middles, side="right") - 1


def scene_deviations(videos: Sequence[bench.CachedVideo], centre: np.ndarray) -> np.ndarray:
    """Every vindex shot's centred unit-norm embedding less the mean of the shots in its true
    scene (scenes of two shots or more): the directions in which one place's shots differ."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    rows = []
    for video in videos:
        shots = shots_of(video)
        e = shot_means(video, shots) - np.asarray(centre, np.float64)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        labels = true_scene_of_shots(video, shots)
        for label in np.unique(labels):
            members = e[labels == label]
            if len(members) > 1:
                rows.append(members - members.mean(axis=0))
    return np.concatenate(rows)


def _whitened_reference(video: bench.CachedVideo, shots: np.ndarray, projection: str, window: int, temperature: float,
                        reference: float, colour_weight: float) -> np.ndarray:
    """The centred reference attention with the centred embeddings' within-scene directions
    shrunk (``pipeline.algorithms.within_scene``) before the cosine. ``projection`` names a
    (centre, directions) pair, or one per video (cross-fitting: each video's fitted without it);
    the pipeline's own functions centre and shrink."""
    entry = _PROJECTIONS[projection]
    centre, fitted = entry[video.name] if isinstance(entry, dict) else entry
    e = shrink_within_scene(centred(shot_means(video, shots), centre), fitted)
    similarity = (1 - colour_weight) * (e @ e.T) + colour_weight * colour_similarity(video, shots, "layout4")
    return window_cohesion(similarity, window, temperature, reference)


COHESIONS["whitened_reference"] = _whitened_reference


def _fitted_projection(videos: Sequence[bench.CachedVideo], strength: float, keep: int) -> tuple[np.ndarray, WithinScene]:
    """The centre and the within-scene directions fitted on ``videos`` and their true scenes,
    as the pipeline's constants are fitted (``benchmarks/fit_embedding_centre.py``); strength 0:
    no direction shrunk (the centred rule)."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    centre = np.concatenate([shot_means(v, shots_of(v)) for v in videos]).mean(axis=0)
    if not strength:
        return centre, WithinScene(np.zeros((0, len(centre))), np.zeros(0), 0.0, "nothing shrunk")
    directions, shrink = fit_within_scene(scene_deviations(videos, centre), strength, keep)
    return centre, WithinScene(directions, shrink, strength, f"{len(videos)} videos")


def whitened_fit(videos: Sequence[bench.CachedVideo], strength: float = FIT_STRENGTH, keep: int = FIT_DIRECTIONS
                 ) -> tuple[SceneMethod, float]:
    """Centre and within-scene directions fitted on the training videos' shots and their true
    scenes (shrunk at ``strength``, the pipeline's, chosen by :func:`shrink_sweep`), then
    :data:`CENTRED_GRID` tuned on the training videos *cross-fitted*: each training video
    compared through the directions fitted on the other training videos, so that the tuning
    sees the directions as a held-out video will (fitted on a video's own scenes, they
    separate its scenes better than any other's, and the tuning then picks a setting that
    splits more)."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    name = ",".join(sorted(v.name for v in videos))
    _PROJECTIONS[name] = _fitted_projection(videos, strength, keep)
    crossfit = f"{name}:crossfit"
    _PROJECTIONS[crossfit] = {v.name: _fitted_projection([u for u in videos if u is not v], strength, keep) for v in videos}
    variants = _grid("whitened_reference", {"projection": (crossfit,), **CENTRED_GRID}, COHESION_THRESHOLDS)
    choice = tune_family(variants, videos, shots_of)
    params = choice.method.params  # type: ignore[attr-defined]
    method = cohesion_method("whitened_reference", (name, *params[1:]), (choice.threshold,),
                             choice.method.__name__.replace(crossfit, f"fitted on {len(videos)} videos, strength {strength:g}"))
    return method, choice.threshold


def shrunk_at_defaults_fit(videos: Sequence[bench.CachedVideo]) -> tuple[SceneMethod, float]:
    """Centre and within-scene directions fitted on the training videos, compared at the
    pipeline's scene settings (those the centred rule was chosen with; nothing else tuned)."""
    from pipeline.config import ScenesConfig

    d = ScenesConfig()
    name = ",".join(sorted(v.name for v in videos))
    _PROJECTIONS[name] = _fitted_projection(videos, FIT_STRENGTH, FIT_DIRECTIONS)
    label = f"shrunk(fitted on {len(videos)} videos, strength {FIT_STRENGTH:g}) at the pipeline's settings"
    method = cohesion_method("whitened_reference", (name, d.window_shots, d.temperature, d.reference_cosine, d.colour_weight),
                             (d.threshold,), label)
    return method, d.threshold


def _default_threshold() -> float:
    from pipeline.config import ScenesConfig

    return ScenesConfig().threshold


# --- the families -------------------------------------------------------------------------

REFERENCE_GRID = {"window": WINDOWS, "temperature": TEMPERATURES, "reference": REFERENCES}


def _grid(kind: str, axes: dict[str, Sequence], thresholds: Sequence[float]) -> list[SceneMethod]:
    out = []
    for coords in itertools.product(*(range(len(v)) for v in axes.values())):
        values = tuple(axis[i] for axis, i in zip(axes.values(), coords))
        label = f"{kind}(" + ", ".join(f"{k}={v if isinstance(v, str) else format(v, 'g')}" for k, v in zip(axes, values)) + ")"
        method = cohesion_method(kind, values, thresholds, label)
        method.coords = coords  # type: ignore[attr-defined]
        out.append(method)
    return out


def families() -> dict[str, list[SceneMethod]]:
    dp_cosine = [_dp_method("cosine", w, 1.0, 0.0, bench.COSINE_THRESHOLDS[::2], f"dp_cosine(window={w})") for w in WINDOWS]
    dp_attention = []
    for coords in itertools.product(range(len(WINDOWS)), range(len(TEMPERATURES)), range(len(REFERENCES))):
        w, tau, r = WINDOWS[coords[0]], TEMPERATURES[coords[1]], REFERENCES[coords[2]]
        method = _dp_method("attention", w, tau, r, COHESION_THRESHOLDS,
                            f"dp_attention(window={w}, temperature={tau:g}, reference={r:g})")
        method.coords = coords  # type: ignore[attr-defined]
        dp_attention.append(method)
    return {
        "(0) cosine merge (adjacent cosine)": [bench.embedding_merge],
        "(0) colour-histogram merge": [bench.histogram_merge],
        "(1) today's attention, default window 3, tau 0.15": _grid("today", {"window": (3,), "temperature": (0.15,)},
                                                                 tuple(np.round(np.arange(0.01, 0.5, 0.01), 3))),
        "(1) today's attention, window and tau tuned too": _grid("today", {"window": WINDOWS, "temperature": TEMPERATURES + (0.15,)},
                                                                 tuple(np.round(np.arange(0.01, 0.5, 0.01), 3))),
        "(2) reference attention (self logit = r)": _grid("reference", REFERENCE_GRID, COHESION_THRESHOLDS),
        "(2) ... window 1 only (= cosine merge at r)": _grid("reference", {**REFERENCE_GRID, "window": (1,)}, COHESION_THRESHOLDS),
        "(3) frames attend over all window frames": _grid("frames_all", {"window": WINDOWS, "temperature": TEMPERATURES},
                                                          tuple(np.round(np.arange(0.01, 0.5, 0.01), 3))),
        "(3) frames attend over shots + reference": _grid("frames_to_shots", REFERENCE_GRID, COHESION_THRESHOLDS),
        "(4) r = quantile of the video's cosines": _grid(
            "quantile_reference", {"window": WINDOWS, "temperature": TEMPERATURES, "quantile": (0.1, 0.2, 0.3, 0.4, 0.5)},
            COHESION_THRESHOLDS),
        "(4) r = mean + z std of the video's cosines": _grid(
            "zscore_reference", {"window": WINDOWS, "temperature": TEMPERATURES, "z": (-1.5, -1.0, -0.5, 0.0)},
            COHESION_THRESHOLDS),
        "(4) z-scored cosine merge": [zscore_merge],
        "(5) reference attention, colour fused": _grid(
            "colour_reference", {**REFERENCE_GRID, "colour_weight": (0.25, 0.5)}, COHESION_THRESHOLDS),
        "(6) DP over cosines (pairs in window)": dp_cosine,
        "(6) DP over reference attention": dp_attention,
    }


# --- tuning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    method: SceneMethod
    threshold: float
    score: bench.SceneScore

    @property
    def label(self) -> str:
        return f"{self.method.__name__} t={self.threshold:g}"


def tune_family(variants: Sequence[SceneMethod], videos: Sequence[bench.CachedVideo], shots_of: bench.ShotSource) -> Choice:
    """The (variant, threshold) with the best pooled F1; ties: higher F_CO, then the higher
    mean F1 of its grid neighbourhood (every point at most one step away on every axis: the
    middle of a plateau rather than its edge), then the first."""
    points: dict[tuple[int, ...], tuple[SceneMethod, float, bench.SceneScore]] = {}
    for n, method in enumerate(variants):
        coords = getattr(method, "coords", (n,))
        for k, t in enumerate(getattr(method, "thresholds", (0.0,))):
            points[(*coords, k)] = (method, float(t), bench.total(bench.evaluate(method, videos, shots_of, t)))
    f1 = {c: s.boundaries.f1 for c, (_, _, s) in points.items()}

    def neighbourhood(c: tuple[int, ...]) -> float:
        near = [f1[n] for n in itertools.product(*((i - 1, i, i + 1) for i in c)) if n in f1]
        return float(np.mean(near))

    best = max(points, key=lambda c: (round(f1[c], 9), round(points[c][2].co.f_co, 9), round(neighbourhood(c), 9)))
    return Choice(*points[best])


def leave_one_out(variants: Sequence[SceneMethod], videos: Sequence[bench.CachedVideo],
                  shots_of: bench.ShotSource) -> list[tuple[str, Choice, bench.SceneScore]]:
    out = []
    for k, video in enumerate(videos):
        choice = tune_family(variants, [v for i, v in enumerate(videos) if i != k], shots_of)
        out.append((video.name, choice, bench.evaluate(choice.method, [video], shots_of, choice.threshold)[0]))
    return out


def tolerant_f_co(video: bench.CachedVideo, predicted: list[tuple[int, int]]) -> bench.CoverageOverflow:
    """Coverage / overflow where a predicted scene overlapping a true one by at most the
    boundary tolerance does not count as overlapping it (``scene_metrics`` counts a
    one-frame overlap, so a boundary one frame late makes a whole scene overflow)."""
    truth = video.true_scenes
    trimmed = [(a + BOUNDARY_TOLERANCE_FRAMES, b - BOUNDARY_TOLERANCE_FRAMES) for a, b in predicted]
    coverage_sum = overflow_sum = 0.0
    frames = 0
    for k, (first, last) in enumerate(truth):
        length = last - first + 1
        overlap = [max(0, min(b, last) - max(a, first) + 1) for a, b in predicted]
        coverage = max(overlap) / length
        core = [i for i, (a, b) in enumerate(trimmed) if a <= b and min(b, last) >= max(a, first)]
        spill = sum((predicted[i][1] - predicted[i][0] + 1) - overlap[i] for i in core)
        neighbours = sum(truth[j][1] - truth[j][0] + 1 for j in (k - 1, k + 1) if 0 <= j < len(truth))
        coverage_sum += coverage * length
        overflow_sum += (min(1.0, spill / neighbours) if neighbours else 0.0) * length
        frames += length
    return bench.CoverageOverflow(coverage_sum, overflow_sum, frames)


# --- the set ------------------------------------------------------------------------------


def load_videos(set_dir: Path = bench.SET_DIR) -> list[bench.CachedVideo]:
    """The cached set. The cache is keyed by the settings that change the networks' outputs;
    where this checkout's key has no cache yet, the newest cache of the same video file is
    used (its network outputs do not depend on scene settings) and said so."""
    out = []
    for path in bench.set_videos(set_dir):
        wanted = bench.cache_path(path)
        if wanted.exists():
            out.append(bench.load_cached(path))
            continue
        found = glob.glob(str(bench.CACHE_DIR / f"{path.stem}-{bench._file_hash(path)}-*.npz"))
        if not found:
            raise SystemExit(f"no cache for {path.name}: run python benchmarks/scenes.py first")
        newest = max(found, key=os.path.getmtime)
        print(f"note: {path.name}: using {Path(newest).name}", file=sys.stderr)
        data = np.load(newest)
        out.append(bench.CachedVideo(path.stem, path, bench.truth_of(path),
                                     **{k: data[k] for k in data.files if k in bench.CACHED_ARRAYS}))
    return out


# --- the table ----------------------------------------------------------------------------


def ablation(videos: Sequence[bench.CachedVideo], per_video: bool) -> None:
    header = f"{'':48s}{'P':>5s} {'R':>5s} {'F1':>5s} {'F_CO':>5s} {'mIoU':>5s}  {'LOVO F1':>7s} {'F_CO':>5s}  {'F_CO±':>5s}  setting (tuned on all six)"
    for label, shots_of in bench.SHOT_SOURCES.items():
        print(f"\n{label}")
        print(header)
        for name, variants in families().items():
            choice = tune_family(variants, videos, shots_of)
            held = leave_one_out(variants, videos, shots_of)
            lovo = bench.total([s for _, _, s in held])
            b, s = choice.score.boundaries, choice.score
            tolerant = bench.total([
                bench.SceneScore(bench.BoundaryCounts(0, 0, 0), tolerant_f_co(v, bench.scene_frames(
                    shots_of(v), choice.method(v, shots_of(v), choice.threshold), v.num_frames)), [])
                for v in videos]).co
            print(f"{name:48s}{b.precision:5.2f} {b.recall:5.2f} {b.f1:5.3f} {s.co.f_co:5.3f} {s.miou:5.2f}  "
                  f"{lovo.boundaries.f1:7.3f} {lovo.co.f_co:5.3f}  {tolerant.f_co:5.3f}  {choice.label}")
            if per_video:
                for video_name, held_choice, score in held:
                    print(f"    held out {video_name}: {held_choice.label}: F1 {score.boundaries.f1:.3f} F_CO {score.co.f_co:.3f}")


DEV_SET = bench.DEV_SET


@dataclass
class ScoreGrid:
    """Every (variant, threshold) point of a family scored on every video once, so tuning on
    any subset of videos only sums scores."""

    points: list[tuple[tuple[int, ...], SceneMethod, float]]
    scores: list[list[bench.SceneScore]]  # [point][video]

    def pooled(self, point: int, videos: Sequence[int]) -> bench.SceneScore:
        return bench.total([self.scores[point][v] for v in videos])

    def choose(self, videos: Sequence[int]) -> int:
        """The best point on ``videos``, by :func:`tune_family`'s rule."""
        pooled = [self.pooled(p, videos) for p in range(len(self.points))]
        f1 = {c: pooled[p].boundaries.f1 for p, (c, _, _) in enumerate(self.points)}

        def neighbourhood(c: tuple[int, ...]) -> float:
            return float(np.mean([f1[n] for n in itertools.product(*((i - 1, i, i + 1) for i in c)) if n in f1]))

        return max(range(len(self.points)), key=lambda p: (round(pooled[p].boundaries.f1, 9), round(pooled[p].co.f_co, 9),
                                                           round(neighbourhood(self.points[p][0]), 9)))

    def label(self, point: int) -> str:
        _, method, threshold = self.points[point]
        return f"{method.__name__} t={threshold:g}"


def score_grid(variants: Sequence[SceneMethod], videos: Sequence[bench.CachedVideo], shots_of: bench.ShotSource) -> ScoreGrid:
    points, scores = [], []
    for n, method in enumerate(variants):
        coords = getattr(method, "coords", (n,))
        for k, t in enumerate(getattr(method, "thresholds", (0.0,))):
            points.append(((*coords, k), method, float(t)))
            scores.append(bench.evaluate(method, videos, shots_of, t))
    return ScoreGrid(points, scores)


def set_ablation(sets: dict[str, list[bench.CachedVideo]], per_video: bool, family_text: str = "") -> None:
    """One row per family, on vindex's own shots: each set's score at the setting tuned on all
    sets pooled (the one default), leave-one-set-out (tuned on the other sets pooled: its F1
    on the held-out set) and leave-one-video-out over all the videos."""
    names = list(sets)
    videos = [v for group in sets.values() for v in group]
    index = {name: [i for i, v in enumerate(videos) if v in group] for name, group in sets.items()}
    everything = list(range(len(videos)))
    others = {name: [i for i in everything if i not in index[name]] for name in names}
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    print(f"\n{len(videos)} videos ({', '.join(f'{n}: {len(g)}' for n, g in sets.items())}), vindex's own shots; "
          f"boundary tolerance ±{BOUNDARY_TOLERANCE_FRAMES} frames")
    cells = "  ".join(f"{n[:27]:>27s}" for n in names)
    width = max(10, *(len(n) for n in names))  # one leave-one-set-out column per set
    loso_width = (width + 1) * len(names) - 1
    print(f"{'':46s}{cells}  {'leave-one-set-out F1':>{loso_width}s}  {'LOVO':>5s}")
    sub = "  ".join(f"{'P':>5s} {'R':>5s} {'F1':>5s} {'F_CO':>4s} {'mIoU':>4s}" for _ in names)
    held_names = " ".join(f"{n:>{width}s}" for n in names)
    print(f"{'method (tuned on all sets)':46s}{sub}  {held_names}  {'F1':>5s}  setting")
    for family, variants in fused_families().items():
        if family_text not in family:
            continue
        if isinstance(variants, Fitted):
            _fitted_row(family, variants, videos, index, others, names, width)
            continue
        grid = score_grid(variants, videos, shots_of)
        best = grid.choose(everything)
        row = []
        for name in names:
            s = grid.pooled(best, index[name])
            row.append(f"{s.boundaries.precision:5.2f} {s.boundaries.recall:5.2f} {s.boundaries.f1:5.3f} {s.co.f_co:4.2f} {s.miou:4.2f}")
        if len(grid.points) > 1 and len(names) > 1:
            loso = [grid.pooled(grid.choose(others[name]), index[name]).boundaries.f1 for name in names]
            held = [grid.scores[grid.choose([j for j in everything if j != i])][i] for i in everything]
            tuned = f"{' '.join(f'{f:{width}.3f}' for f in loso)}  {bench.total(held).boundaries.f1:5.3f}"
        else:  # a fixed setting: nothing to tune, so nothing to hold out
            tuned = f"{' '.join('-'.rjust(width) for _ in names)}  {'-':>5s}"
        print(f"{family[:46]:46s}{'  '.join(row)}  {tuned}  {grid.label(best)}")
        if per_video:
            for name in names:
                print(f"    tuned on the sets other than {name}: {grid.label(grid.choose(others[name]))}; "
                      f"tuned on {name} alone: F1 {grid.pooled(grid.choose(index[name]), index[name]).boundaries.f1:.3f}")
            for i, v in enumerate(videos):
                s = grid.scores[best][i]
                print(f"    {v.name:28s} F1 {s.boundaries.f1:.3f} P {s.boundaries.precision:.2f} R {s.boundaries.recall:.2f} "
                      f"F_CO {s.co.f_co:.3f}")


def _fitted_row(family: str, fitted: Fitted, videos: list[bench.CachedVideo], index: dict[str, list[int]],
                others: dict[str, list[int]], names: list[str], width: int) -> None:
    """A fitted family's row of :func:`set_ablation`: fitted on all the videos; on the other
    sets for each held-out set; on the other videos for each held-out video."""
    shots_of = bench.SHOT_SOURCES["vindex shots"]

    def scored(train: Sequence[int], test: Sequence[int]) -> bench.SceneScore:
        method, threshold = fitted.fit([videos[i] for i in train])
        return bench.total(bench.evaluate(method, [videos[i] for i in test], shots_of, threshold))

    everything = list(range(len(videos)))
    method, threshold = fitted.fit(videos)
    row = []
    for name in names:
        s = bench.total(bench.evaluate(method, [videos[i] for i in index[name]], shots_of, threshold))
        row.append(f"{s.boundaries.precision:5.2f} {s.boundaries.recall:5.2f} {s.boundaries.f1:5.3f} {s.co.f_co:4.2f} {s.miou:4.2f}")
    loso = [scored(others[name], index[name]).boundaries.f1 for name in names]
    lovo = bench.total([scored([j for j in everything if j != i], [i]) for i in everything]).boundaries.f1
    print(f"{family[:46]:46s}{'  '.join(row)}  {' '.join(f'{f:{width}.3f}' for f in loso)}  {lovo:5.3f}  "
          f"{method.__name__} t={threshold:g}")


def held_out_table(sets: dict[str, list[bench.CachedVideo]], held: dict[str, list[bench.CachedVideo]],
                   family_text: str = "") -> None:
    """One row per family: its scores on each held-out set (``benchmarks/scenes.py``'s
    ``HELD_OUT_SETS``) at the setting tuned (or fitted) on the development sets pooled, as in
    the default table, so nothing is chosen on the held-out videos; and, for reference only,
    the F1 the family reaches at the setting best on that held-out set itself."""
    dev = [v for group in sets.values() for v in group]
    videos = dev + [v for group in held.values() for v in group]
    tuning = list(range(len(dev)))
    index = {name: [i for i, v in enumerate(videos) if v in group] for name, group in held.items()}
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    print(f"\nheld out: {', '.join(f'{n}: {len(g)} videos' for n, g in held.items())}; every setting tuned on the "
          f"{len(dev)} videos of {', '.join(sets)}; vindex's own shots; boundary tolerance ±{BOUNDARY_TOLERANCE_FRAMES} frames")
    cells = "  ".join(f"{n[:27]:>27s} {'':>8s}" for n in held)
    print(f"{'':46s}{cells}")
    sub = "  ".join(f"{'P':>5s} {'R':>5s} {'F1':>5s} {'F_CO':>4s} {'mIoU':>4s} {'best F1':>8s}" for _ in held)
    print(f"{'method (tuned on the development sets)':46s}{sub}  setting")
    for family, variants in fused_families().items():
        if family_text not in family:
            continue
        row = []
        if isinstance(variants, Fitted):
            method, threshold = variants.fit(dev)
            for name in held:
                test = [videos[i] for i in index[name]]
                s = bench.total(bench.evaluate(method, test, shots_of, threshold))
                row.append(f"{s.boundaries.precision:5.2f} {s.boundaries.recall:5.2f} {s.boundaries.f1:5.3f} "
                           f"{s.co.f_co:4.2f} {s.miou:4.2f} {'-':>8s}")
            print(f"{family[:46]:46s}{'  '.join(row)}  {method.__name__} t={threshold:g}")
            continue
        grid = score_grid(variants, videos, shots_of)
        best = grid.choose(tuning)
        for name in held:
            s = grid.pooled(best, index[name])
            own = grid.pooled(grid.choose(index[name]), index[name]).boundaries.f1 if len(grid.points) > 1 else float("nan")
            own_cell = f"{own:8.3f}" if own == own else f"{'-':>8s}"
            row.append(f"{s.boundaries.precision:5.2f} {s.boundaries.recall:5.2f} {s.boundaries.f1:5.3f} "
                       f"{s.co.f_co:4.2f} {s.miou:4.2f} {own_cell}")
        print(f"{family[:46]:46s}{'  '.join(row)}  {grid.label(best)}", flush=True)


#: Strengths :func:`shrink_sweep` compares.
SHRINK_STRENGTHS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0)


def shrink_sweep(sets: dict[str, list[bench.CachedVideo]], held: dict[str, list[bench.CachedVideo]],
                 keep: int = FIT_DIRECTIONS) -> None:
    """How strongly to shrink the within-scene directions, at the pipeline's scene settings
    (nothing else tuned): for each strength, F1 per set with the centre and directions fitted
    on every development set; leave-one-set-out (fitted on the other sets); leave-one-video-out;
    and each held-out set (fitted on the development sets). Strength 0 is the centred rule."""
    from pipeline.config import ScenesConfig

    defaults = ScenesConfig()
    params = (defaults.window_shots, defaults.temperature, defaults.reference_cosine, defaults.colour_weight)
    shots_of = bench.SHOT_SOURCES["vindex shots"]
    videos = [v for group in sets.values() for v in group]

    def f1(train: Sequence[bench.CachedVideo], test: Sequence[bench.CachedVideo], strength: float) -> bench.SceneScore:
        name = f"sweep:{strength:g}:" + ",".join(sorted(v.name for v in train))
        if name not in _PROJECTIONS:
            _PROJECTIONS[name] = _fitted_projection(train, strength, keep)
        method = cohesion_method("whitened_reference", (name, *params), (defaults.threshold,), name)
        return bench.total(bench.evaluate(method, test, shots_of, defaults.threshold))

    print(f"\nshrinking the within-scene directions ({keep} kept) at the pipeline's scene settings "
          f"(window {params[0]}, temperature {params[1]:g}, reference {params[2]:g}, colour {params[3]:g}, threshold {defaults.threshold:g})")
    names, held_names = list(sets), list(held)
    print(f"{'strength':>8s}  {'F1 fitted on all: ' + ' / '.join(names):>44s}  {'LOSO: ' + ' / '.join(names):>38s}  {'LOVO':>5s}  "
          + "  ".join(f"held out {n}" for n in held_names))
    for strength in (0.0, *SHRINK_STRENGTHS):
        fitted = " / ".join(f"{f1(videos, group, strength).boundaries.f1:.3f}" for group in sets.values())
        loso = " / ".join(f"{f1([v for v in videos if v not in group], group, strength).boundaries.f1:.3f}" for group in sets.values())
        lovo = bench.total([s for v in videos for s in [f1([u for u in videos if u is not v], [v], strength)]]).boundaries.f1
        held_cells = "  ".join(f"{f1(videos, group, strength).boundaries.f1:>{9 + len(n)}.3f}" for n, group in held.items())
        print(f"{strength:8g}  {fitted:>44s}  {loso:>38s}  {lovo:5.3f}  {held_cells}", flush=True)


def sensitivity(videos: Sequence[bench.CachedVideo]) -> None:
    """Pooled boundary F1 of the pipeline's rule around its defaults, one setting moved at a time."""
    import dataclasses

    from pipeline.config import ScenesConfig
    from pipeline.algorithms.scenes import COLOUR_LEVELS, scene_starts

    base = ScenesConfig()

    def f1(shots_of: bench.ShotSource, **changes: float) -> str:
        config = dataclasses.replace(base, **changes)
        method = lambda video, shots, _: scene_starts(  # noqa: E731
            shot_means(video, shots), config, layout_histograms(video, shots, COLOUR_LEVELS))
        score = bench.total(bench.evaluate(method, videos, shots_of, 0.0))
        return f"{score.boundaries.f1:.2f}/{score.co.f_co:.2f}"

    axes = {
        "colour_weight": (0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5),
        "reference_cosine": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
        "threshold": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4),
        "temperature": (0.01, 0.02, 0.05, 0.1, 0.15),
        "window_shots": (1, 2, 3, 4, 5, 6),
        "centre_embeddings": (True, False),
        "shrink_within_scene": (True, False),
    }
    print(f"\nF1/F_CO around the defaults {base}, {len(videos)} videos pooled (vindex shots | true shots)")
    for name, values in axes.items():
        cells = [f"{v}: {f1(bench.SHOT_SOURCES['vindex shots'], **{name: v})} | "
                 f"{f1(bench.SHOT_SOURCES['true shots'], **{name: v})}" for v in values]
        print(f"  {name}: " + ";  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-video", action="store_true", help="the setting LOVO chose for each held-out video")
    parser.add_argument("--sensitivity", action="store_true", help="only the pipeline's rule around its defaults")
    parser.add_argument("--scenes-set-only", action="store_true", help="the earlier table: benchmarks/scenes_set alone")
    parser.add_argument("--dev-set", type=Path, default=DEV_SET, help="the scenes-dev set (videos/, gt/), read in place")
    parser.add_argument("--family", default="", help="only the families whose name holds this text")
    parser.add_argument("--shrink-sweep", action="store_true",
                        help="only the within-scene shrinking's strengths at the pipeline's scene settings")
    parser.add_argument("--held-out", action="store_true",
                        help="only the held-out sets' table: each family at the setting tuned on the development sets")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    if args.shrink_sweep:
        dev = {name: load_videos(set_dir) for name, set_dir in bench.development_sets(args.dev_set).items()}
        shrink_sweep(dev, {name: load_videos(set_dir) for name, set_dir in bench.held_out_sets().items()})
        return
    if args.held_out:
        dev = {name: load_videos(set_dir) for name, set_dir in bench.development_sets(args.dev_set).items()}
        held = {name: load_videos(set_dir) for name, set_dir in bench.held_out_sets().items()}
        if not held:
            raise SystemExit("no held-out set with videos and truth (benchmarks/scenes.py's HELD_OUT_SETS)")
        held_out_table(dev, held, args.family)
        return
    videos = load_videos()
    if args.scenes_set_only:
        ablation(videos, args.per_video)
        sensitivity(videos)
        return
    sets = {name: load_videos(set_dir) for name, set_dir in bench.development_sets(args.dev_set).items()}
    if not args.sensitivity:
        set_ablation(sets, args.per_video, args.family)
    sensitivity([v for group in sets.values() for v in group])


if __name__ == "__main__":
    main()
