"""The within-scene directions of the embedding space, which scene grouping shrinks before
comparing shots.

Shots of one place differ from each other in a few directions of EfficientNet-Lite0's centred
embedding space more than in others: another zoom, another framing, a person in the frame or
not. Two such shots are then less alike than their place is, and two look-alike places can be
more alike than one place's views. Over the development sets' shots (their true scenes), the
scatter of each shot about its scene's mean has a few large directions; shrinking those
directions (``shrink[k]`` of the component along ``directions[k]``) before the cosine lets the
directions that tell places apart weigh more.

The constants lie in ``within_scene_directions.npz`` beside this module, written by
``python benchmarks/fit_embedding_centre.py`` (with the centre; do not edit by hand):
``directions`` float16 [k, 1280], orthonormal rows, the scatter's largest eigen-directions;
``shrink`` float32 [k], ``1 - sqrt(strength / (s / s_max + strength))`` for eigenvalue ``s``
(the largest ``s_max``); ``strength``, ``shots`` and ``sets``, how they were fitted. Directions
past the ``k`` kept are left as they are (keeping them all changed no scene on the sets).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

import numpy as np

from pipeline.algorithms.attention import normalise

#: The file beside this module that holds the fitted directions.
DIRECTIONS_FILE = "within_scene_directions.npz"
#: How the committed directions are fitted (``benchmarks/fit_embedding_centre.py``): the
#: strength, chosen as the best mean leave-one-set-out F1 over 0.02-3 at the pipeline's scene
#: settings (``python benchmarks/scene_methods.py --shrink-sweep``, docs/scenes.md; 0.05-0.2
#: within 0.006 of it); and how many directions are kept (all 1,280 gave the same F1 on every
#: set, held out or not).
FIT_STRENGTH = 0.1
FIT_DIRECTIONS = 128


@dataclass(frozen=True)
class WithinScene:
    """Fitted directions in which one scene's shots vary, and how much each is shrunk."""

    directions: np.ndarray  # float64 [k, width], orthonormal rows
    shrink: np.ndarray  # float64 [k], in [0, 1)
    strength: float
    described: str  # what it was fitted on

    @property
    def width(self) -> int:
        return int(self.directions.shape[1])

    def digest(self) -> str:
        """A short hash of the constants (a refit changes scenes as a setting would)."""
        data = np.concatenate([self.directions.astype(np.float32).ravel(), self.shrink.astype(np.float32)])
        return hashlib.sha256(data.tobytes()).hexdigest()[:16]


@functools.cache
def within_scene() -> WithinScene:
    """The committed directions (read once per process)."""
    with resources.files("pipeline.algorithms").joinpath(DIRECTIONS_FILE).open("rb") as file, np.load(file) as data:
        return WithinScene(
            directions=data["directions"].astype(np.float64),
            shrink=data["shrink"].astype(np.float64),
            strength=float(data["strength"]),
            described=str(data["sets"]),
        )


def shrink_within_scene(centred_embeddings: np.ndarray, fitted: WithinScene | None = None) -> np.ndarray:
    """Centred unit-norm shot embeddings with their within-scene directions shrunk, normalised
    again (float64). Zero rows (shots without an embedding) stay zero; embeddings of another
    width than the fitted directions' are returned as they are."""
    vectors = np.asarray(centred_embeddings, dtype=np.float64)
    fitted = fitted or within_scene()
    if vectors.ndim != 2 or vectors.shape[1] != fitted.width or not len(fitted.shrink):
        return vectors
    along = vectors @ fitted.directions.T  # [shots, k]
    return normalise(vectors - (along * fitted.shrink) @ fitted.directions)


def fit_within_scene(deviations: np.ndarray, strength: float, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(directions [keep, width], shrink [keep]) from shots' centred embeddings less their
    scene's mean (``deviations`` [n, width]): the ``keep`` largest eigen-directions of their
    scatter, each shrunk to ``sqrt(strength / (s / s_max + strength))`` of itself."""
    scatter = deviations.T @ deviations / max(len(deviations), 1)
    values, vectors = np.linalg.eigh(scatter)
    order = np.argsort(values)[::-1][:keep]
    relative = np.clip(values[order], 0, None) / max(float(values[order[0]]), 1e-12)
    shrink = 1 - np.sqrt(strength / (relative + strength))
    return vectors[:, order].T, shrink
