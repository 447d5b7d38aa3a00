"""Dataset sources. Each one turns a collection into a manifest (see :mod:`songfeel.manifest`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from songfeel import manifest as manifest_io
from songfeel.datasets import demo, fma

log = logging.getLogger(__name__)

SOURCES = {
    "demo": demo.build_manifest,
    "fma_small": fma.build_manifest,
    "fma_medium": fma.build_manifest,
    "fma_large": fma.build_manifest,
    "fma_full": fma.build_manifest,
}


def build_manifest(dataset_cfg, out_path: str | Path) -> pd.DataFrame:
    """Build the manifest of ``dataset_cfg.name`` and write it to ``out_path``.

    Args:
        dataset_cfg: the ``dataset`` config group (needs ``name``).
        out_path: CSV file to write.

    Raises:
        KeyError: the dataset name is unknown.
        NotImplementedError: the source is not implemented yet.
    """
    name = dataset_cfg.name
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(SOURCES)}")
    manifest = SOURCES[name](dataset_cfg)
    manifest_io.write(manifest, out_path)
    log.info("wrote %d tracks of %s to %s, splits %s", len(manifest), name, out_path, manifest_io.split_counts(manifest))
    return manifest
