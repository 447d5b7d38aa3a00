"""Triplet accuracy: the share of triplets with d(anchor, positive) < d(anchor, negative).

Also the per-triplet outcome (:func:`triplet_correct`) and a percentile bootstrap
confidence interval of the accuracy (:func:`bootstrap_ci`), plain or by clusters.
"""

from __future__ import annotations

import numpy as np

#: Most index draws held in memory at once by :func:`bootstrap_ci` (about 32 MiB of int64).
_BOOTSTRAP_BLOCK = 1 << 22


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


def _triplet_arrays(anchor, positive, negative) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three embeddings as arrays; ValueError unless they are 2-D and of one shape."""
    anchor, positive, negative = (np.asarray(x) for x in (anchor, positive, negative))
    if anchor.ndim != 2 or anchor.shape != positive.shape or anchor.shape != negative.shape:
        raise ValueError(
            "anchor, positive and negative must be (n_triplets, dim) arrays of one shape, got "
            f"{anchor.shape}, {positive.shape} and {negative.shape}"
        )
    return anchor, positive, negative


def triplet_correct(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Whether each triplet is ordered right: d(anchor, positive) < d(anchor, negative), Euclidean.

    The mean of the result is :func:`triplet_accuracy`; keeping the per-triplet outcome
    allows confidence intervals (:func:`bootstrap_ci`) and paired comparisons of models.

    Args:
        anchor, positive, negative: (n_triplets, dim) embeddings.

    Returns:
        bool array of shape (n_triplets,); ties count as wrong. Empty for no triplets.

    Raises:
        ValueError: the three arrays are not 2-D or differ in shape.
    """
    anchor, positive, negative = _triplet_arrays(anchor, positive, negative)
    d_pos = np.linalg.norm(anchor - positive, axis=1)
    d_neg = np.linalg.norm(anchor - negative, axis=1)
    return d_pos < d_neg


def odd_one_out_correct(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Whether the anchor-positive pair is the closest of the three pairs (odd-one-out form).

    A listener who names the negative as the odd one out says that anchor and
    positive are the most similar pair; the embedding agrees when
    d(a, p) < d(a, n) and d(a, p) < d(p, n). Chance is 1/3, as in the bliss-rs
    listening survey (https://lelele.io/thesis.pdf, section 4).

    Args:
        anchor, positive, negative: (n_triplets, dim) embeddings.

    Returns:
        bool array of shape (n_triplets,); ties count as wrong.

    Raises:
        ValueError: the three arrays are not 2-D or differ in shape.
    """
    anchor, positive, negative = _triplet_arrays(anchor, positive, negative)
    d_ap = np.linalg.norm(anchor - positive, axis=1)
    d_an = np.linalg.norm(anchor - negative, axis=1)
    d_pn = np.linalg.norm(positive - negative, axis=1)
    return (d_ap < d_an) & (d_ap < d_pn)


def bootstrap_ci(
    correct: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Accuracy and its percentile bootstrap confidence interval.

    The percentile bootstrap (Efron & Tibshirani 1993, *An Introduction to the
    Bootstrap*, ch. 13) draws ``n_resamples`` samples of the triplets with
    replacement and takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of their accuracies. Triplets that share an anchor track are not
    independent, so with ``clusters`` (e.g. the anchor track of each triplet) whole
    clusters are drawn with replacement instead (a cluster bootstrap; Cameron &
    Miller 2015, "A Practitioner's Guide to Cluster-Robust Inference"), and each
    resample's accuracy is its correct triplets over its triplets. The interval is
    then wider when triplets within a cluster agree.

    Args:
        correct: (n_triplets,) per-triplet outcomes, bool or 0/1 (see :func:`triplet_correct`).
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the random generator; the same seed gives the same interval.
        clusters: optional (n_triplets,) labels (any hashable numpy dtype) of the cluster of each triplet.

    Returns:
        ``(mean, low, high)``: the accuracy over all triplets and the interval's bounds,
        all in [0, 1]; three NaNs when there are no triplets.

    Raises:
        ValueError: ``correct`` is not 1-D, ``clusters`` differs in length,
            ``confidence`` is outside (0, 1) or ``n_resamples`` < 1.
    """
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"correct must be 1-D (n_triplets,), got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if clusters is not None and len(clusters) != len(values):
        raise ValueError(f"clusters has {len(clusters)} labels for {len(values)} triplets")
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if clusters is None:
        # Each unit is one triplet: a sum of 1 correct-or-not over a count of 1.
        sums, counts = values, np.ones_like(values)
    else:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inverse.ravel(), weights=values)
        counts = np.bincount(inverse.ravel()).astype(np.float64)
    n_units = sums.shape[0]
    accuracies = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BOOTSTRAP_BLOCK // n_units)  # resamples per block, to bound memory
    for first in range(0, n_resamples, block):
        rows = min(block, n_resamples - first)
        draws = rng.integers(0, n_units, size=(rows, n_units))
        accuracies[first : first + rows] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(accuracies, [alpha, 1.0 - alpha])
    return float(values.mean()), float(low), float(high)
