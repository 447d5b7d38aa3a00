"""The embedded demo: 29 tracks of the PyPI package ``immich-memories-music==0.1.0``.

About 30 s each, 48 kHz stereo Opus, generated with ACE-Step 1.5 (MIT). Files
live at ``immich_memories_music/tracks/<mood>/<mood>_<style>_<n>.opus``: the
folder is the mood (calm, energetic, happy, nostalgic, tender) and the second
part of the name the style (acoustic, electronic).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from songfeel import manifest as manifest_io
from songfeel.audio import audio_info
from songfeel.errors import AudioError

log = logging.getLogger(__name__)

PACKAGE = "immich_memories_music"
STYLES = ("acoustic", "electronic")


def tracks_dir() -> Path:
    """The folder of the installed demo tracks.

    Raises:
        FileNotFoundError: the package ``immich-memories-music`` is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{PACKAGE} is not installed: pip install immich-memories-music==0.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "tracks"


def parse_labels(path: Path) -> dict[str, str]:
    """Mood and style of one demo file, from its folder and name.

    Raises:
        ValueError: the name does not follow ``<mood>_<style>_<n>.opus``.
    """
    mood = path.parent.name
    parts = path.stem.split("_")
    if len(parts) < 3 or parts[0] != mood or parts[1] not in STYLES:
        raise ValueError(f"{path}: name does not follow <mood>_<style>_<n>")
    return {"mood": mood, "style": parts[1]}


def build_manifest(dataset_cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest of the demo tracks, with label-paired track-disjoint splits.

    Args:
        dataset_cfg: needs ``val_fraction``, ``test_fraction``, ``seed``,
            ``label_columns`` and optionally ``limit`` (first N tracks by id).

    Returns:
        the manifest (see :mod:`songfeel.manifest`) and the skipped files (``path, error``).
    """
    rows, skipped = [], []
    for path in sorted(tracks_dir().glob("*/*.opus")):
        try:
            labels = parse_labels(path)
            info = audio_info(path)
        except (AudioError, ValueError) as exc:
            skipped.append({"path": str(path), "error": str(exc)})
            continue
        rows.append(
            {
                "track_id": f"demo:{path.stem}",
                "source": "demo",
                "path": str(path.resolve()),
                **info,
                "artist": "",
                "album": "",
                "genre": "",
                "genres": "",
                **labels,
            }
        )
    manifest = pd.DataFrame(rows).sort_values("track_id").reset_index(drop=True)
    limit = dataset_cfg.get("limit")
    if limit:
        manifest = manifest.head(int(limit)).reset_index(drop=True)
    groups = manifest_io.label_key(manifest, dataset_cfg.label_columns)
    manifest["split"] = manifest_io.assign_label_splits(
        manifest["track_id"].tolist(),
        groups.tolist(),
        val_fraction=dataset_cfg.val_fraction,
        test_fraction=dataset_cfg.test_fraction,
        seed=dataset_cfg.seed,
    )
    return manifest, pd.DataFrame(skipped, columns=list(manifest_io.SKIPPED_COLUMNS))
