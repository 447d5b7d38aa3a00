"""The one bootstrap of songfeel: every confidence interval (triplet accuracy, paired differences,
retrieval, segmentation scores) comes from :func:`bootstrap_ci`. The plain and paired cases are
:func:`scipy.stats.bootstrap` (percentile method); resampling by cluster (anchor song), which scipy
does not offer, is the small implementation here."""

from __future__ import annotations

import numpy as np
import scipy.stats

#: Most index draws held in memory at once by :func:`bootstrap_ci` (about 32 MiB of int64).
_BOOTSTRAP_BLOCK = 1 << 22


def bootstrap_ci(
    correct: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """A mean (e.g. triplet accuracy) and its percentile bootstrap confidence interval.

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
        if values.size == 1:  # one observation: nothing to resample (scipy.stats.bootstrap refuses it)
            return float(values[0]), float(values[0]), float(values[0])
        if np.isnan(values).any():  # a NaN score makes every resampled mean NaN
            return float("nan"), float("nan"), float("nan")
        interval = scipy.stats.bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                         method="percentile", rng=rng, vectorized=True).confidence_interval
        return float(values.mean()), float(interval.low), float(interval.high)
    # The cluster bootstrap, which scipy.stats.bootstrap does not offer: whole clusters are drawn.
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
