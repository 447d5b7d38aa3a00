"""Stage 03 (triplets): label, self-supervised and human (odd-one-out) triplets; none crosses splits."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from songfeel import manifest
from songfeel.store import FeatureStore
from songfeel.triplets import build_triplets as build_triplet_table
from songfeel.triplets import read_human_answers

log = logging.getLogger(__name__)


def build_triplets(triplets, manifest_path: str | Path, features_path: str | Path, out_path: str | Path,
                   report_path: str | Path, label_columns: Sequence[str],
                   hierarchy_column: str | None = None) -> pd.DataFrame:
    """Write the triplet table and its report.

    Args:
        triplets: the ``triplets`` config group (``conf/triplets/``).
        manifest_path: stage 01's manifest; features_path: stage 02's store (track durations).
        out_path: the triplet CSV to write; report_path: its counts as JSON.
        label_columns: the dataset's label columns (``dataset.label_columns``), coarse to fine.
        hierarchy_column: the dataset's genre-hierarchy column, if any (``dataset.hierarchy_column``).

    Returns:
        the triplet table (``docs/formats.md``, "Triplets").
    """
    with FeatureStore(features_path) as store:
        durations = {t: n / store.config.frame_rate for t, n in store.frame_counts().items()}
    answers = [read_human_answers(p) for p in triplets.human_answers]
    table, report = build_triplet_table(
        manifest.read(manifest_path),
        durations,
        label_columns=label_columns,
        label_per_anchor=triplets.label_per_anchor,
        self_per_track=triplets.self_per_track,
        excerpt_seconds=triplets.excerpt_seconds,
        seed=triplets.seed,
        hierarchy_column=hierarchy_column,
        human_answers=pd.concat(answers, ignore_index=True) if answers else None,
    )
    table.to_csv(out_path, index=False)
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %d triplets to %s: %s", len(table), out_path, report)
    return table
