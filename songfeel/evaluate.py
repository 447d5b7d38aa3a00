"""Stage 05: test triplet accuracy and structure metrics for every trained variant.

Writes ``metrics.json`` (one entry per variant: test triplet accuracy overall
and per triplet kind, validation accuracy, mean SDC and Vendi score over the
test tracks, parameter count), ``structure.csv`` (one row per variant and test
track) and the plots of :mod:`songfeel.report`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from songfeel import manifest as manifest_io
from songfeel import report
from songfeel.embed import embed_excerpts, triplet_accuracy_on_store, triplet_excerpts
from songfeel.metrics.structure import similarity_matrix, structure_metrics
from songfeel.models.embedder import load_checkpoint, parameter_count
from songfeel.store import FeatureStore

log = logging.getLogger(__name__)


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders (those holding a ``model.pt``), sorted by name.

    Raises:
        FileNotFoundError: no run folder holds a checkpoint.
    """
    runs = sorted(p.parent for p in Path(runs_dir).glob("*/model.pt"))
    if not runs:
        raise FileNotFoundError(f"{runs_dir}: no trained runs (model.pt) found; run stage 04")
    return runs


def segment_excerpts(store: FeatureStore, track_id: str, segment_seconds: float) -> list[tuple[str, int, int]]:
    """Consecutive whole segments of ``segment_seconds`` of a track, in frames; the remainder is dropped."""
    length = store.config.seconds_to_frames(segment_seconds)
    n_segments = store.n_frames(track_id) // length
    return [(track_id, k * length, (k + 1) * length) for k in range(n_segments)]


def structure_table(model, store: FeatureStore, track_ids, segment_seconds: float, batch_size: int):
    """Per track, the structure metrics and the segment SSM (None for fewer than 2 segments)."""
    rows, ssms = [], {}
    for track_id in track_ids:
        segments = segment_excerpts(store, track_id, segment_seconds)
        if len(segments) < 2:
            log.warning("%s: %d segment(s) of %.1f s, structure metrics are NaN", track_id, len(segments), segment_seconds)
            rows.append({"track_id": track_id, "n_segments": len(segments), "sdc": math.nan,
                         "vendi_score": math.nan, "vendi_per_segment": math.nan})
            continue
        embeddings = embed_excerpts(model, store, segments, batch_size)
        rows.append({"track_id": track_id, **structure_metrics(embeddings)})
        ssms[track_id] = similarity_matrix(embeddings)
    return pd.DataFrame(rows), ssms


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def evaluate_runs(
    runs_dir: str | Path,
    store_path: str | Path,
    triplets_path: str | Path,
    manifest_path: str | Path,
    eval_cfg,
    results_dir: str | Path,
) -> dict:
    """Evaluate every run folder under ``runs_dir`` and write the results.

    Args:
        eval_cfg: needs ``segment_seconds``, ``batch_size``, ``num_threads`` and ``ssm_examples``.
        results_dir: receives ``metrics.json``, ``structure.csv``, ``report.md`` and ``plots/``.

    Returns:
        the metrics written to ``metrics.json``.
    """
    torch.set_num_threads(eval_cfg.num_threads)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    tracks = manifest_io.read(manifest_path)
    table = pd.read_csv(triplets_path)
    metrics, structure_frames, example_ssms = {}, [], {}
    with FeatureStore(store_path) as store:
        test_ids = [t for t in tracks.loc[tracks["split"] == "test", "track_id"] if t in store]
        runs = list_runs(runs_dir)
        for run in runs:
            model, meta = load_checkpoint(run / "model.pt")
            variant = meta["variant"]
            entry = {"val_triplet_accuracy": float(meta["val_triplet_accuracy"]), "n_parameters": parameter_count(model)}
            test = table[table["split"] == "test"]
            entry["test_triplet_accuracy"] = triplet_accuracy_on_store(model, store, triplet_excerpts(test, store), eval_cfg.batch_size)
            for kind, part in test.groupby("kind"):
                entry[f"test_triplet_accuracy_{kind}"] = triplet_accuracy_on_store(
                    model, store, triplet_excerpts(part, store), eval_cfg.batch_size)
            entry["n_test_triplets"] = int(len(test))
            structure, ssms = structure_table(model, store, test_ids, eval_cfg.segment_seconds, eval_cfg.batch_size)
            structure.insert(0, "variant", variant)
            structure_frames.append(structure)
            entry["mean_sdc"] = _nanmean(structure["sdc"])
            entry["mean_vendi_score"] = _nanmean(structure["vendi_score"])
            entry["mean_vendi_per_segment"] = _nanmean(structure["vendi_per_segment"])
            entry["n_test_tracks"] = len(test_ids)
            entry["n_tracks_single_segment"] = int(structure["sdc"].isna().sum())
            metrics[variant] = entry
            example_ssms[variant] = {t: ssms[t] for t in sorted(ssms)[: eval_cfg.ssm_examples]}
            log.info("%s: test accuracy %.3f, SDC %.3f, Vendi %.2f", variant, entry["test_triplet_accuracy"],
                     entry["mean_sdc"], entry["mean_vendi_score"])
    structure = pd.concat(structure_frames, ignore_index=True).merge(
        tracks[["track_id", "mood", "style"]], on="track_id", how="left")
    structure.to_csv(results_dir / "structure.csv", index=False)
    (results_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    report.write_report(metrics, structure, [run / "history.csv" for run in runs],
                        example_ssms, results_dir, eval_cfg.segment_seconds)
    return metrics
