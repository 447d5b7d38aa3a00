"""Triplet accuracy: the share of triplets with d(anchor, positive) < d(anchor, negative)."""

from __future__ import annotations

import numpy as np


def triplet_accuracy(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """2-way triplet accuracy with Euclidean distance.

    Args:
        anchor, positive, negative: (n_triplets, dim) embeddings.

    Returns:
        accuracy in [0, 1]; NaN when there are no triplets. Ties count as wrong.
    """
    if len(anchor) == 0:
        return float("nan")
    d_pos = np.linalg.norm(anchor - positive, axis=1)
    d_neg = np.linalg.norm(anchor - negative, axis=1)
    return float(np.mean(d_pos < d_neg))
