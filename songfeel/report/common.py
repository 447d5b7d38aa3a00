"""What the report's plots, tables and Markdown share: the columns of their input tables, the checks
of those tables and of embedding vectors, and the formatting of a missing number.

Inputs are long-format tables built by the caller. Missing values (a method that cannot score a
triplet source, a song with one segment) are dropped and counted, never averaged.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

SCORE_COLUMNS = ("method", "kind", "split", "source", "n_triplets", "accuracy", "ci_low", "ci_high",
                 "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high")
RETRIEVAL_COLUMNS = ("method", "kind", "split", "k", "n_songs", "precision_at_k", "map")
CONSISTENCY_METRICS = ("sdc", "vendi_score", "vendi_per_segment",
                     "matched_sdc", "matched_vendi_score", "matched_vendi_per_segment")
CONSISTENCY_COLUMNS = ("method", "track_id", "corpus", "origin", "label", "n_segments", *CONSISTENCY_METRICS)
COST_COLUMNS = ("method", "kind", "n_parameters", "size_bytes_fp32", "onnx_bytes", "audio_seconds", "seconds",
                "x_real_time", "ratio_vs_mecomp")
HISTORY_COLUMNS = ("epoch", "train_loss", "val_accuracy")
NEIGHBOUR_COLUMNS = ("query", "query_label", "rank", "neighbour", "neighbour_label", "cosine", "same_label")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing} (has {list(frame.columns)})")


def is_empty(frame: pd.DataFrame | None) -> bool:
    return frame is None or len(frame) == 0


def unit_vectors(vectors: pd.DataFrame, name: str = "vectors") -> np.ndarray:
    """Rows of ``vectors`` scaled to unit L2 norm, float64.

    Raises:
        ValueError: duplicate track ids, a non-finite value or an all-zero row (naming up to 5 track ids).
    """
    if vectors.index.has_duplicates:
        duplicated = vectors.index[vectors.index.duplicated()].unique().tolist()[:5]
        raise ValueError(f"{name}: duplicate track ids {duplicated}")
    values = vectors.to_numpy(dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{name}: expected (n_songs, dim) with dim >= 1, got shape {values.shape}")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} songs have NaN or infinite values, e.g. "
                         f"{vectors.index[bad].tolist()[:5]}")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise ValueError(f"{name}: {int(zero.sum())} songs have an all-zero vector (no cosine), e.g. "
                         f"{vectors.index[zero].tolist()[:5]}")
    return values / norms


def fmt(value, spec: str) -> str:
    return "n/a" if pd.isna(value) else format(value, spec)

