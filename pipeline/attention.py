"""Scaled dot-product attention over unit-norm embeddings (numpy).

Embeddings are L2-normalised, so ``q . k`` is a cosine in [-1, 1]. Dividing by
``sqrt(d)`` (d = 1280) would flatten every softmax to near-uniform; a temperature
``tau`` plays the role of the scale instead: ``softmax(Q K^T / tau)``.
"""

from __future__ import annotations

import numpy as np


def attention_weights(queries: np.ndarray, keys: np.ndarray, temperature: float, *, mask_self: bool = False) -> np.ndarray:
    """Row-stochastic attention matrix ``softmax(Q K^T / tau)`` of shape [len(Q), len(K)].

    With ``mask_self`` (Q is K), each item's attention to itself is excluded, when it has others.
    """
    logits = (queries.astype(np.float64) @ keys.astype(np.float64).T) / temperature
    if mask_self and len(queries) > 1:
        np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
