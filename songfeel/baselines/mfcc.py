"""The MFCC baseline: the mean and standard deviation over time of each track's stored MFCCs.

:func:`mfcc_statistics` gives one vector per song (the classic "bag of frames" song
descriptor), and :class:`Standardiser` z-scores it with statistics of the training
tracks only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from songfeel.store import FeatureStore


def mfcc_statistics(store: FeatureStore, track_ids: Sequence[str]) -> np.ndarray:
    """Mean and standard deviation over time of each track's stored MFCCs.

    Args:
        store: an open :class:`songfeel.store.FeatureStore`.
        track_ids: the tracks, in the order of the output rows.

    Returns:
        float64 array of shape (n_tracks, 2 * n_mfcc): columns ``[0, n_mfcc)`` are the
        means over all frames of each coefficient, columns ``[n_mfcc, 2 n_mfcc)`` the
        (population) standard deviations. Units are those of the stored MFCCs.

    Raises:
        KeyError: a track is not in the store (the track and the store are named).
    """
    n_mfcc = int(store.config.n_mfcc)
    out = np.empty((len(track_ids), 2 * n_mfcc), dtype=np.float64)
    for row, track_id in enumerate(track_ids):
        if track_id not in store:
            raise KeyError(f"{store.path}: track {track_id!r} is not in the feature store")
        frames = store.mfcc(track_id)
        out[row, :n_mfcc] = frames.mean(axis=0, dtype=np.float64)
        out[row, n_mfcc:] = frames.std(axis=0, dtype=np.float64)
    return out


class Standardiser:
    """Z-scores features with the mean and standard deviation of the training tracks.

    Fit on training tracks only, then transform every split with the same
    statistics, so that no test statistic leaks into the features.

    Example::

        scaler = Standardiser().fit(mfcc_statistics(store, train_ids))
        test_features = scaler.transform(mfcc_statistics(store, test_ids))

    Args:
        min_std: floor of the standard deviation, so that a feature that is constant on
            the training tracks does not divide by zero.

    Attributes:
        mean_: (n_features,) training means; None before :meth:`fit`.
        scale_: (n_features,) training standard deviations, at least ``min_std``.
    """

    def __init__(self, min_std: float = 1e-6) -> None:
        if not min_std > 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.min_std = float(min_std)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, features: np.ndarray) -> Standardiser:
        """Learn the mean and standard deviation of each column.

        Args:
            features: (n_tracks, n_features) training features.

        Returns:
            self.

        Raises:
            ValueError: ``features`` is not 2-D, has no rows, or holds NaN/Inf.
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"fit needs a (n_tracks >= 1, n_features) array, got shape {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("fit features hold NaN or Inf")
        self.mean_ = features.mean(axis=0)
        self.scale_ = np.maximum(features.std(axis=0), self.min_std)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Z-score ``features`` (n_tracks, n_features) with the fitted statistics; float64, same shape.

        Raises:
            RuntimeError: called before :meth:`fit`.
            ValueError: the number of columns differs from the fitted one.
        """
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("Standardiser.transform called before fit")
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"expected (n_tracks, {self.mean_.shape[0]}) features, got shape {features.shape}")
        return (features - self.mean_) / self.scale_

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        """:meth:`fit` on ``features``, then :meth:`transform` them."""
        return self.fit(features).transform(features)
