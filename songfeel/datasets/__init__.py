"""Dataset sources. Each one turns a collection into a manifest (see :mod:`songfeel.manifest`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from songfeel import manifest as manifest_io
from songfeel.datasets import demo, fma, local, soundtracks

log = logging.getLogger(__name__)

SOURCES = {
    "demo": demo.build_manifest,
    "local": local.build_manifest,
    "soundtracks": soundtracks.build_manifest,
    "fma_small": fma.build_manifest,
    "fma_medium": fma.build_manifest,
    "fma_large": fma.build_manifest,
    "fma_full": fma.build_manifest,
}


def build_manifest(dataset_cfg, out_path: str | Path, skipped_path: str | Path | None = None) -> pd.DataFrame:
    """Build the manifest of ``dataset_cfg.name`` and write it to ``out_path``.

    Every source reports the files it could not use instead of failing on them;
    they are written to ``skipped_path`` (CSV, columns ``path, error``).

    Args:
        dataset_cfg: the ``dataset`` config group (needs ``name``).
        out_path: manifest CSV to write.
        skipped_path: CSV of skipped files to write (None: only logged).

    Raises:
        KeyError: the dataset name is unknown.
        SongfeelError: the source cannot be read as a whole (e.g. an FMA download
            that fails its checksum); single bad files are skipped and reported instead.
        NotADirectoryError: a local library folder does not exist.
    """
    name = dataset_cfg.name
    if name not in SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(SOURCES)}")
    manifest, skipped = SOURCES[name](dataset_cfg)
    manifest_io.write(manifest, out_path)
    for _, row in skipped.iterrows():
        log.info("skipped %s: %s", row["path"], row["error"])
    if skipped_path is not None:
        Path(skipped_path).parent.mkdir(parents=True, exist_ok=True)
        skipped.to_csv(skipped_path, index=False)
    if len(skipped):
        log.warning("%d files skipped, listed with the cause in %s", len(skipped), skipped_path or "the log")
    log.info("wrote %d tracks of %s to %s, splits %s, skipped %d files", len(manifest), name, out_path,
             manifest_io.split_counts(manifest), len(skipped))
    return manifest
