"""Triplet accuracy: the share of triplets with d(anchor, positive) < d(anchor, negative).

Also the per-triplet outcome (:func:`triplet_correct`, :func:`odd_one_out_correct`), whose mean's
confidence interval :func:`songfeel.metrics.bootstrap.bootstrap_ci` gives.
"""

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
    allows confidence intervals (:func:`songfeel.metrics.bootstrap.bootstrap_ci`) and paired comparisons of models.

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
