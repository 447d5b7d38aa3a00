"""Label retrieval: how well the nearest neighbours of a song share its label.

Each song queries all the others (itself excluded), ranked by Euclidean
distance; a retrieved song is relevant when it carries the query's label.
Precision@k and average precision are the standard definitions of information
retrieval (Manning, Raghavan & Schütze, "Introduction to Information
Retrieval", 2008, chapter 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ranked_relevance(embeddings: np.ndarray, labels: Sequence) -> np.ndarray:
    """(n, n - 1) bool: per query, the relevance of the other songs from nearest to farthest."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"need (n_songs, dim) embeddings and n_songs labels, got {embeddings.shape} and {labels.shape}")
    if len(labels) < 2:
        raise ValueError("retrieval needs at least 2 songs")
    squared = (embeddings**2).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * embeddings @ embeddings.T
    np.fill_diagonal(distances, np.inf)  # a song does not retrieve itself
    order = np.argsort(distances, axis=1, kind="stable")[:, :-1]
    return labels[order] == labels[:, None]


def per_query(embeddings: np.ndarray, labels: Sequence, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision@k and average precision of every query, for paired comparisons of two methods.

    Args:
        embeddings: (n_songs, dim).
        labels: (n_songs,) one label per song.
        k: neighbours per query, 1 <= k < n_songs.

    Returns:
        ``(precision, average_precision)``, each (n_songs,) in [0, 1]; the average precision is
        NaN for a query whose label no other song carries.

    Raises:
        ValueError: shapes disagree, fewer than 2 songs, or k out of range.
    """
    relevance = _ranked_relevance(embeddings, labels)
    if not 1 <= k <= relevance.shape[1]:
        raise ValueError(f"k must be in [1, {relevance.shape[1]}], got {k}")
    hits = np.cumsum(relevance, axis=1)
    ranks = np.arange(1, relevance.shape[1] + 1)
    n_relevant = relevance.sum(axis=1)
    precision_sums = (relevance * hits / ranks).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        average_precision = np.where(n_relevant > 0, precision_sums / n_relevant, np.nan)
    return relevance[:, :k].mean(axis=1), average_precision


def precision_at_k(embeddings: np.ndarray, labels: Sequence, k: int) -> float:
    """Mean over songs of the share of its ``k`` nearest other songs that share its label.

    Args:
        embeddings: (n_songs, dim).
        labels: (n_songs,) one label per song.
        k: neighbours per query, 1 <= k < n_songs.

    Returns:
        precision@k in [0, 1].

    Raises:
        ValueError: shapes disagree, fewer than 2 songs, or k out of range.
    """
    return float(per_query(embeddings, labels, k)[0].mean())
