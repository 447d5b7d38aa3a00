"""Stage 01 (download): the configured dataset source -> the manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from songfeel.datasets import build_manifest


def download(dataset, manifest_path: str | Path, skipped_path: str | Path) -> pd.DataFrame:
    """Download (where the source needs it), verify and list the dataset's tracks.

    Args:
        dataset: the ``dataset`` config group (``conf/dataset/``).
        manifest_path: the manifest CSV to write (``docs/formats.md``, "Manifest").
        skipped_path: the CSV of files the source could not use (``path, error``).

    Returns:
        the manifest.

    Raises:
        KeyError: unknown dataset; songfeel.errors.SongfeelError: the source as a whole cannot be read.
    """
    return build_manifest(dataset, manifest_path, skipped_path)
