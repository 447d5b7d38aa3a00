"""Anchor/positive/negative triplets, written by stage 03 as one CSV.

Each member of a triplet is an excerpt: a track id and a start and end time in
seconds. Columns::

    triplet_id, split, kind,
    anchor_track, anchor_start_s, anchor_end_s,
    positive_track, positive_start_s, positive_end_s,
    negative_track, negative_start_s, negative_end_s

``kind`` is ``label`` (anchor and positive share every label column, the
negative differs in at least one; whole tracks) or ``self`` (anchor and positive
are two non-overlapping excerpts of one track, the negative an excerpt of
another track). All three members of a triplet come from the same split, and the
splits are track-disjoint, as assigned in the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from songfeel import manifest as manifest_io

log = logging.getLogger(__name__)

ROLES = ("anchor", "positive", "negative")
COLUMNS = ("triplet_id", "split", "kind") + tuple(
    f"{role}_{field}" for role in ROLES for field in ("track", "start_s", "end_s")
)


def label_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    label_columns: Sequence[str],
    per_anchor: int,
    rng: np.random.Generator,
) -> list[dict]:
    """Label triplets within each split: whole-track excerpts.

    Args:
        tracks: manifest rows (needs ``track_id``, ``split`` and ``label_columns``).
        durations: seconds of stored audio per track id.
        label_columns: labels the anchor and the positive share (e.g. mood, style).
        per_anchor: triplets drawn per anchor track.
        rng: random generator.

    Returns:
        rows of the triplet table (without ``triplet_id``).
    """
    rows = []
    key = manifest_io.label_key(tracks, label_columns)
    for split, part in tracks.groupby("split", sort=True):
        part_key = key.loc[part.index]
        ids = part["track_id"].to_numpy()
        for anchor, anchor_key in zip(ids, part_key):
            positives = [t for t, k in zip(ids, part_key) if k == anchor_key and t != anchor]
            negatives = [t for t, k in zip(ids, part_key) if k != anchor_key]
            if not positives or not negatives:
                continue
            for _ in range(per_anchor):
                positive = positives[rng.integers(len(positives))]
                negative = negatives[rng.integers(len(negatives))]
                rows.append(
                    _row(split, "label", [(t, 0.0, durations[t]) for t in (anchor, positive, negative)])
                )
    return rows


def self_supervised_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    excerpt_seconds: float,
    per_track: int,
    rng: np.random.Generator,
) -> list[dict]:
    """Self-supervised triplets: two excerpts of one track and one of another.

    The anchor and positive excerpts do not overlap. Tracks shorter than two
    excerpts are left out (and logged).

    Args:
        tracks: manifest rows (needs ``track_id`` and ``split``).
        durations: seconds of stored audio per track id.
        excerpt_seconds: length of every excerpt, in seconds.
        per_track: triplets drawn per anchor track.
        rng: random generator.
    """
    rows = []
    for split, part in tracks.groupby("split", sort=True):
        ids = part["track_id"].tolist()
        usable = [t for t in ids if durations[t] >= 2 * excerpt_seconds]
        for t in sorted(set(ids) - set(usable)):
            log.info("no self-supervised triplets for %s: shorter than 2 x %.1f s", t, excerpt_seconds)
        if len(usable) < 2:
            continue
        for anchor in usable:
            others = [t for t in usable if t != anchor]
            for _ in range(per_track):
                first, second = _two_disjoint_starts(durations[anchor], excerpt_seconds, rng)
                negative = others[rng.integers(len(others))]
                neg_start = rng.uniform(0.0, durations[negative] - excerpt_seconds)
                members = [
                    (anchor, first, first + excerpt_seconds),
                    (anchor, second, second + excerpt_seconds),
                    (negative, neg_start, neg_start + excerpt_seconds),
                ]
                rows.append(_row(split, "self", members))
    return rows


def _two_disjoint_starts(duration: float, length: float, rng: np.random.Generator) -> tuple[float, float]:
    """Start times (s) of two non-overlapping excerpts of ``length`` s in ``duration`` s, in random order."""
    slack = duration - 2 * length
    gap_before, gap_between = np.sort(rng.uniform(0.0, slack, size=2))
    first = gap_before
    second = length + gap_between
    return (first, second) if rng.random() < 0.5 else (second, first)


def _row(split: str, kind: str, members) -> dict:
    row = {"split": split, "kind": kind}
    for role, (track, start, end) in zip(ROLES, members):
        row[f"{role}_track"] = track
        row[f"{role}_start_s"] = round(float(start), 3)
        row[f"{role}_end_s"] = round(float(end), 3)
    return row


def build_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    label_columns: Sequence[str],
    label_per_anchor: int,
    self_per_track: int,
    excerpt_seconds: float,
    seed: int,
) -> pd.DataFrame:
    """Label and self-supervised triplets for every split.

    Only tracks present in ``durations`` (i.e. in the feature store) are used.

    Returns:
        the triplet table (see the module docstring), sorted by split and kind.
    """
    rng = np.random.default_rng(seed)
    tracks = tracks[tracks["track_id"].isin(list(durations))]
    rows = label_triplets(tracks, durations, label_columns, label_per_anchor, rng)
    rows += self_supervised_triplets(tracks, durations, excerpt_seconds, self_per_track, rng)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "triplet_id"])
    table = table.sort_values(["split", "kind"], kind="stable").reset_index(drop=True)
    table.insert(0, "triplet_id", np.arange(len(table)))
    return table


def summary(table: pd.DataFrame) -> dict[str, int]:
    """Number of triplets per ``split/kind``."""
    counts = table.groupby(["split", "kind"]).size()
    return {f"{split}/{kind}": int(n) for (split, kind), n in counts.items()}
