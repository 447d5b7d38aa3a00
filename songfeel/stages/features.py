"""Stage 02 (features): decode every track of the manifest and cache its log-mel and MFCC in HDF5."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from songfeel import manifest
from songfeel.features import FeatureConfig
from songfeel.store import write_skipped, write_store


def extract_features(features, manifest_path: str | Path, store_path: str | Path,
                     skipped_path: str | Path) -> pd.DataFrame:
    """Bring the feature store up to date with the manifest, incrementally (:func:`songfeel.store.write_store`).

    Args:
        features: the ``features`` config group (``conf/features/``).
        manifest_path: stage 01's manifest.
        store_path: the HDF5 feature store to write.
        skipped_path: the CSV of tracks that could not be decoded (``track_id, path, error``).

    Returns:
        the skipped tracks (also written to ``skipped_path``).

    Raises:
        songfeel.store.FeatureStoreError: a worker died; finished tracks are kept for the next run.
    """
    skipped, _ = write_store(
        manifest.read(manifest_path),
        store_path,
        FeatureConfig.from_mapping(features),
        n_jobs=features.n_jobs,
        min_seconds=features.min_seconds,
        dtype=features.dtype,
        backend=features.backend,
        dask_address=features.dask_address,
    )
    write_skipped(skipped, skipped_path)
    return skipped

