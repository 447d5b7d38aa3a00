"""The tables of stage 05's report: Markdown tables of accuracy, retrieval, cost and song
consistency, the consistency summary and the nearest neighbours.

Numbers are strings in the Markdown tables: fractions in percent with their 95 % CI, "n/a" for a
missing value, "-" where a method cannot score a column; a baseline that could not run on this
machine gets a row that says so (:func:`append_not_measured`), never silently missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from songfeel.native import not_measured_note
from songfeel.report.common import (
    CONSISTENCY_METRICS,
    NEIGHBOUR_COLUMNS,
    fmt,
    require_columns,
    unit_vectors,
)

log = logging.getLogger(__name__)


def _percent_ci(value: float, low: float, high: float) -> str:
    """``"71.2 [65.0-77.1]"`` (percent), ``"n/a"`` for a missing value."""
    if pd.isna(value):
        return "n/a"
    if pd.isna(low) or pd.isna(high):
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * low:.1f}-{100 * high:.1f}]"


# ---------------------------------------------------------------------------
# consistency


def consistency_summary(consistency: pd.DataFrame) -> pd.DataFrame:
    """Song-consistency statistics per method, origin and label.

    Args:
        consistency: as for :func:`songfeel.report.plots.plot_consistency_by_origin` (needs ``method, origin, label`` and the
            six metric columns ``sdc, vendi_score, vendi_per_segment, matched_sdc,
            matched_vendi_score, matched_vendi_per_segment``).

    Returns:
        one row per ``method, origin, label`` (NaN keys kept as groups) with ``n_songs`` (rows),
        ``n_nan`` (songs whose ``sdc`` is NaN) and, for each metric ``X``, ``median_X`` and
        ``mean_X`` over the songs where ``X`` is not NaN (NaN when none is).

    Raises:
        ValueError: a column is missing.
    """
    keys = ["method", "origin", "label"]
    require_columns(consistency, [*keys, *CONSISTENCY_METRICS], "consistency")
    stats = [f"{stat}_{metric}" for metric in CONSISTENCY_METRICS for stat in ("median", "mean")]
    columns = [*keys, "n_songs", "n_nan", *stats]
    if consistency.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in consistency.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key))
        row["n_songs"] = len(group)
        row["n_nan"] = int(group["sdc"].isna().sum())
        for metric in CONSISTENCY_METRICS:
            values = group[metric].dropna().astype(float)
            row[f"median_{metric}"] = float(values.median()) if len(values) else float("nan")
            row[f"mean_{metric}"] = float(values.mean()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# nearest neighbours


def neighbour_table(vectors: pd.DataFrame, labels: pd.Series, queries: Sequence[str], k: int = 5) -> pd.DataFrame:
    """The ``k`` nearest other songs of each query by cosine similarity.

    Args:
        vectors: (n_songs, dim) embeddings indexed by track id (unique); rows need not be normalised.
        labels: track id -> label string; a song without one gets NaN and ``same_label`` False.
        queries: track ids of ``vectors``.
        k: neighbours per query; more than ``n_songs - 1`` is cut to ``n_songs - 1`` with a warning.

    Returns:
        ``k`` rows per query, in query order: ``query, query_label, rank`` (1 = nearest),
        ``neighbour, neighbour_label, cosine`` (in [-1, 1]) and ``same_label``. The query itself is
        never its own neighbour (by track id; a duplicate song under another id is). Ties keep
        the order of ``vectors``.

    Raises:
        KeyError: a query is not a track id of ``vectors`` (named in the message).
        ValueError: ``k < 1``, fewer than 2 songs, NaN, all-zero vectors or duplicate track ids.
    """
    if isinstance(queries, str):
        queries = [queries]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    missing = [q for q in queries if q not in vectors.index]
    if missing:
        raise KeyError(f"queries not in vectors ({len(vectors)} songs): {missing[:5]}")
    if len(vectors) < 2:
        raise ValueError(f"nearest neighbours need at least 2 songs, got {len(vectors)}")
    unit = unit_vectors(vectors)
    if k > len(vectors) - 1:
        log.warning("k=%d > %d other songs; using k=%d", k, len(vectors) - 1, len(vectors) - 1)
        k = len(vectors) - 1
    song_labels = labels.reindex(vectors.index)
    ids = vectors.index.to_numpy()
    positions = vectors.index.get_indexer(list(queries))
    rows = []
    for query, position in zip(queries, positions):
        cosine = unit @ unit[position]
        cosine[position] = -np.inf
        nearest = np.argsort(-cosine, kind="stable")[:k]
        query_label = song_labels.iloc[position]
        for rank, j in enumerate(nearest, start=1):
            neighbour_label = song_labels.iloc[j]
            rows.append({
                "query": query,
                "query_label": query_label,
                "rank": rank,
                "neighbour": ids[j],
                "neighbour_label": neighbour_label,
                "cosine": float(np.clip(cosine[j], -1.0, 1.0)),
                "same_label": bool(pd.notna(query_label) and query_label == neighbour_label),
            })
    return pd.DataFrame(rows, columns=list(NEIGHBOUR_COLUMNS))


# ---------------------------------------------------------------------------
# Markdown tables


def leaderboard_table(rows: pd.DataFrame, not_measured: Mapping[str, str] | None = None) -> str:
    """The Markdown leaderboard of ``rows`` (one split and source), best 2-way accuracy first, with the
    paired difference to MECOMP's model where ``rows`` has it."""
    rows = rows.sort_values(["accuracy", "method"], ascending=[False, True], na_position="last")
    table = pd.DataFrame({
        "method": rows["method"].astype(str),
        "kind": rows["kind"].astype(str),
        "n_triplets": [fmt(n, ".0f") for n in rows["n_triplets"]],
        "2-way accuracy, % [95 % CI]": [_percent_ci(*v) for v in
                                        zip(rows["accuracy"], rows["ci_low"], rows["ci_high"])],
        "odd-one-out accuracy, % [95 % CI]": [_percent_ci(*v) for v in zip(
            rows["odd_one_out"], rows["odd_one_out_ci_low"], rows["odd_one_out_ci_high"])],
    })
    if "diff_vs_reference" in rows and rows["diff_vs_reference"].notna().any():
        # the paired difference to MECOMP's model on the same triplets (songfeel.benchmark.paired_difference)
        for prefix, name in (("", "2-way"), ("ooo_", "odd-one-out")):
            if f"{prefix}diff_vs_reference" in rows:
                table[f"{name} vs mecomp, pp [paired 95 % CI]"] = [
                    "-" if pd.isna(d) else f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                    for d, lo, hi in zip(rows[f"{prefix}diff_vs_reference"], rows[f"{prefix}diff_ci_low"],
                                         rows[f"{prefix}diff_ci_high"])]
    table = append_not_measured(table, "2-way accuracy, % [95 % CI]", not_measured)
    return table.to_markdown(index=False, disable_numparse=True,
                             colalign=("left", "left") + ("right",) * (table.shape[1] - 2))


def accuracy_pivot(scores: pd.DataFrame, value: str, low: str, high: str,
                   not_measured: Mapping[str, str] | None = None) -> str:
    """A Markdown table of ``value`` [``low``-``high``] (n triplets) per method (rows) and split / source
    (columns, test first); ``-`` where a method has no score."""
    frame = scores.assign(
        column=scores["split"].astype(str) + " / " + scores["source"].astype(str),
        cell=[_percent_ci(*v) + ("" if pd.isna(n) else f" (n={int(n)})")
              for v, n in zip(zip(scores[value], scores[low], scores[high]), scores["n_triplets"])],
    )
    order = sorted(frame["column"].unique(), key=lambda c: (not c.startswith("test"), c))
    pivot = frame.pivot_table(index=["method", "kind"], columns="column", values="cell", aggfunc="first")
    pivot = pivot.reindex(columns=order).fillna("-").reset_index()
    pivot.columns.name = None
    pivot = append_not_measured(pivot, order[0], not_measured) if order else pivot
    return pivot.to_markdown(index=False, disable_numparse=True)


def retrieval_table(retrieval: pd.DataFrame, not_measured: Mapping[str, str] | None = None) -> str:
    """A Markdown table of precision@k and mAP per method, split and k, best mAP first."""
    rows = retrieval.sort_values(["split", "k", "map"], ascending=[True, True, False], na_position="last")
    table = pd.DataFrame({
        "method": rows["method"].astype(str),
        "kind": rows["kind"].astype(str),
        "split": rows["split"].astype(str),
        "k": [fmt(v, ".0f") for v in rows["k"]],
        "n_songs": [fmt(v, ".0f") for v in rows["n_songs"]],
        "precision@k": [fmt(v, ".3f") for v in rows["precision_at_k"]],
        "mAP": [fmt(v, ".3f") for v in rows["map"]],
    })
    table = append_not_measured(table, "precision@k", not_measured)
    return table.to_markdown(index=False, disable_numparse=True, colalign=("left",) * 3 + ("right",) * 4)


def cost_table(cost: pd.DataFrame) -> str:
    """A Markdown table of the cost per method: sizes in kB, times in seconds, missing values as n/a."""
    table = pd.DataFrame({
        "method": cost["method"].astype(str),
        "kind": cost["kind"].astype(str),
        "parameters": [fmt(v, ",.0f") for v in cost["n_parameters"]],
        "size fp32 (kB)": [fmt(v / 1000, ",.1f") for v in cost["size_bytes_fp32"]],
        "ONNX (kB)": [fmt(v / 1000, ",.1f") for v in cost["onnx_bytes"]],
        "audio (s)": [fmt(v, ",.0f") for v in cost["audio_seconds"]],
        "time (s)": [fmt(v, ",.2f") for v in cost["seconds"]],
        "x real time": [fmt(v, ",.0f") for v in cost["x_real_time"]],
        "speed vs MECOMP": [fmt(v, ".2f") for v in cost["ratio_vs_mecomp"]],
    })
    return table.to_markdown(index=False, disable_numparse=True, colalign=("left",) * 2 + ("right",) * 7)


def consistency_tables(consistency: pd.DataFrame) -> list[str]:
    """Median consistency metrics per method and origin, then per method, origin and label."""
    medians = [f"median_{metric}" for metric in CONSISTENCY_METRICS]
    out = []
    tables = (("Medians by origin (all labels):", consistency.assign(label="all"), ["method", "origin"]),
              ("Medians by origin and label:", consistency, ["method", "origin", "label"]))
    for title, frame, keys in tables:
        summary = consistency_summary(frame)[[*keys, "n_songs", "n_nan", *medians]]
        summary = summary.rename(columns={c: c.removeprefix("median_") for c in medians})
        out += [title, "", summary.to_markdown(index=False, floatfmt=".3f"), ""]
    return out


def append_not_measured(table: pd.DataFrame, note_column: str, not_measured: Mapping[str, str] | None) -> pd.DataFrame:
    """A table of strings with one more row per method of ``not_measured`` (method -> cause) that it
    lacks: the method, kind "baseline", "not measured on this machine: <cause>" in ``note_column``
    and "-" elsewhere, so that a baseline that could not run never goes silently missing."""
    present = set(table["method"]) if "method" in table else set()
    rows = [{column: ("baseline" if column == "kind" else not_measured_note(cause) if column == note_column
                      else method if column == "method" else "-") for column in table.columns}
            for method, cause in (not_measured or {}).items() if method not in present]
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True) if rows else table
