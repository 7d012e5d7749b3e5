"""Scaled dot-product attention over unit-norm embeddings (numpy).

Embeddings are L2-normalised, so ``q . k`` is a cosine in [-1, 1]. Dividing by
``sqrt(d)`` (d = 1280) would flatten every softmax to near-uniform; a temperature
``tau`` plays the role of the scale instead: ``softmax(Q K^T / tau)``.
"""

from __future__ import annotations

import numpy as np

#: Most bytes of float64 logits held at once by :func:`attention_received`: 2,048 rows at a
#: time for a 4,096-frame shot, 83 for 100,000 frames.
ATTENTION_BLOCK_BYTES = 64 << 20


def attention_weights(queries: np.ndarray, keys: np.ndarray, temperature: float, *, mask_self: bool = False) -> np.ndarray:
    """Row-stochastic attention matrix ``softmax(Q K^T / tau)`` of shape [len(Q), len(K)].

    With ``mask_self`` (Q is K), each item's attention to itself is excluded, when it has others.
    """
    logits = (queries.astype(np.float64) @ keys.astype(np.float64).T) / temperature
    if mask_self and len(queries) > 1:
        np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    attention: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
    return attention


def attention_received(
    embeddings: np.ndarray, temperature: float, *, block_bytes: int = ATTENTION_BLOCK_BYTES
) -> np.ndarray:
    """Attention each item receives from the others: column sums of the self-masked attention.

    Equals ``attention_weights(E, E, tau, mask_self=True).sum(axis=0)``, but rows are taken in
    blocks of at most ``block_bytes`` of logits, so memory grows with ``len(E)``, not its
    square (the whole matrix is 80 GB for 100,000 items).
    """
    count = len(embeddings)
    received = np.zeros(count)
    if count == 0:
        return received
    keys = np.asarray(embeddings, dtype=np.float64)
    block_rows = min(count, max(1, block_bytes // (8 * count)))
    buffer = np.empty((block_rows, count))  # reused: one block of logits alive at a time
    for first in range(0, count, block_rows):
        rows = min(block_rows, count - first)
        logits = np.matmul(keys[first : first + rows], keys.T, out=buffer[:rows])
        logits /= temperature
        if count > 1:
            diagonal = np.arange(rows)
            logits[diagonal, first + diagonal] = -np.inf
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        received += logits.sum(axis=0)
    return received


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a matrix of logits (float64), stable for any finite scale."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    softmax: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
    return softmax


#: Norm below which a vector counts as zero: it is divided by this instead (stays near zero).
MIN_NORM = 1e-12


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each vector (the last axis) scaled to unit length; the one normalisation of embeddings
    (shots, scenes, similarity search), so a cosine means the same everywhere."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, MIN_NORM)
    return unit
