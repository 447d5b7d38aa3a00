"""The manifest: one row per track, the schema every dataset source writes.

Columns (CSV, UTF-8):

==================  =========================================================
``track_id``        stable id, unique, ``[A-Za-z0-9_.:-]+`` (e.g. ``demo:calm_acoustic_1``)
``source``          dataset name (``demo``, ``fma_small``, ``local`` ...)
``path``            absolute path of the audio file
``duration_seconds`` duration from the file header, in seconds
``sample_rate``     native sample rate of the file, in Hz
``channels``        native number of channels
``artist``          label, may be empty
``album``           label, may be empty
``genre``           label, may be empty (FMA: genre_top)
``genres``          every genre of the track, most general first, joined by ``|``; may be empty
``mood``            label, may be empty
``style``           label, may be empty
``split``           ``train``, ``val`` or ``test``; track-disjoint
==================  =========================================================
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from songfeel.errors import ManifestError

LABEL_COLUMNS = ("artist", "album", "genre", "mood", "style")
COLUMNS = ("track_id", "source", "path", "duration_seconds", "sample_rate", "channels", *LABEL_COLUMNS, "genres",
           "split")
SKIPPED_COLUMNS = ("path", "error")
SPLITS = ("train", "val", "test")
TRACK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]+$")


def stable_hash(text: str, seed: int = 0) -> int:
    """A 64-bit hash of ``text`` that is the same on every machine and run."""
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def validate(manifest: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and return the manifest with its columns in order.

    Raises:
        ManifestError: a column is missing, a track id is malformed or repeated,
            or a split is not one of train/val/test.
    """
    missing = [c for c in COLUMNS if c not in manifest.columns]
    if missing:
        raise ManifestError(f"manifest lacks columns {missing}")
    bad = [t for t in manifest["track_id"] if not TRACK_ID_PATTERN.match(str(t))]
    if bad:
        raise ManifestError(f"malformed track ids {bad[:5]}")
    dup = manifest["track_id"][manifest["track_id"].duplicated()].tolist()
    if dup:
        raise ManifestError(f"repeated track ids {dup[:5]}")
    wrong = sorted(set(manifest["split"]) - set(SPLITS))
    if wrong:
        raise ManifestError(f"unknown splits {wrong}")
    return manifest.loc[:, list(COLUMNS)].reset_index(drop=True)


def write(manifest: pd.DataFrame, path: str | Path) -> None:
    """Validate and write ``manifest`` as CSV, sorted by track id."""
    manifest = validate(manifest).sort_values("track_id").reset_index(drop=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(path, index=False)


def read(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV; empty labels come back as ''."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    frame = pd.read_csv(path, dtype={c: str for c in ("track_id", "source", "path", *LABEL_COLUMNS, "genres", "split")})
    for column in (*LABEL_COLUMNS, "genres"):
        frame[column] = frame[column].fillna("")
    return validate(frame)


def assign_label_splits(
    track_ids: Sequence[str],
    groups: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> list[str]:
    """Track-disjoint splits in which every held-out group has a pair of tracks.

    Label triplets need an anchor and a positive of the same group in the same
    split. So the validation and test splits take tracks two at a time from one
    group, and each group keeps at least one track for training. Groups and
    tracks are visited in the order of a seeded stable hash, so the same input
    always gives the same splits.

    Args:
        track_ids: one id per track.
        groups: the label group of each track (e.g. ``"calm/acoustic"``).
        val_fraction, test_fraction: target share of tracks, in [0, 1).
        seed: seed of the stable hash.

    Returns:
        the split of each track, in the order of ``track_ids``.
    """
    if len(track_ids) != len(groups):
        raise ValueError("track_ids and groups differ in length")
    n = len(track_ids)
    targets = {"test": int(round(test_fraction * n)), "val": int(round(val_fraction * n))}
    members: dict[str, list[str]] = {}
    for track_id, group in zip(track_ids, groups):
        members.setdefault(group, []).append(track_id)
    split = {t: "train" for t in track_ids}
    taken = {"test": 0, "val": 0}
    order = sorted(members, key=lambda g: stable_hash(g, seed))
    for group in order:
        pool = sorted(members[group], key=lambda t: stable_hash(t, seed))
        for name in ("test", "val"):
            if taken[name] < targets[name] and len(pool) >= 3:
                for track_id in pool[:2]:
                    split[track_id] = name
                taken[name] += 2
                break
    return [split[t] for t in track_ids]


def assign_group_splits(
    group_keys: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    overrides: Mapping[str, str] | None = None,
) -> list[str]:
    """Group-disjoint splits that stay put when tracks are added or removed.

    Each group (an artist, else an album or soundtrack) goes wholly to one
    split, chosen by where a seeded stable hash of its key falls in [0, 1):
    below ``test_fraction`` is test, below ``test_fraction + val_fraction`` is
    val, the rest is train. A group's split depends only on its own key, or on
    ``overrides`` where that names the group: pinning the groups added to a
    dataset to ``train`` keeps an earlier test set unchanged.

    Returns:
        the split of each entry of ``group_keys``, in order.

    Raises:
        ValueError: the fractions are negative or sum to 1 or more, or an
            override names an unknown split.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val {val_fraction}, test {test_fraction}")
    overrides = dict(overrides or {})
    unknown = {k: v for k, v in overrides.items() if v not in SPLITS}
    if unknown:
        raise ValueError(f"split overrides name unknown splits (use one of {', '.join(SPLITS)}): {unknown}")
    splits = []
    for key in group_keys:
        if str(key) in overrides:
            splits.append(overrides[str(key)])
            continue
        position = stable_hash(str(key), seed) / 2**64
        splits.append("test" if position < test_fraction else "val" if position < test_fraction + val_fraction else "train")
    return splits


def split_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Number of tracks per split."""
    counts = manifest["split"].value_counts()
    return {s: int(counts.get(s, 0)) for s in SPLITS}


def label_key(manifest: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per track joining the label ``columns`` (e.g. ``"calm/acoustic"``)."""
    if not columns:
        raise ValueError("at least one label column is needed")
    return manifest.loc[:, list(columns)].astype(str).agg("/".join, axis=1)


__all__ = [
    "COLUMNS",
    "LABEL_COLUMNS",
    "SKIPPED_COLUMNS",
    "SPLITS",
    "assign_group_splits",
    "assign_label_splits",
    "label_key",
    "read",
    "split_counts",
    "stable_hash",
    "validate",
    "write",
]
