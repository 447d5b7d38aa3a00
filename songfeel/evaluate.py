"""Stage 05: test triplet accuracy and structure metrics for every trained variant.

Writes ``metrics.json`` (one entry per variant: test triplet accuracy overall
and per triplet kind, validation accuracy, mean SDC and Vendi score over the
test tracks, parameter count), ``structure.csv`` (one row per variant and test
track) and the plots of :mod:`songfeel.report`; and the held-out benchmark of
:mod:`songfeel.benchmark`: ``benchmark.csv`` / ``benchmark.md`` (every variant
and baseline on the test label triplets, whole songs, bootstrap 95 % CIs) and
``decode_robustness.csv``.
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
from songfeel import baselines, benchmark, report
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
    label_columns=None,
) -> dict:
    """Evaluate every run folder under ``runs_dir`` and write the results.

    Args:
        eval_cfg: needs ``segment_seconds``, ``batch_size``, ``num_threads`` and ``ssm_examples``.
        results_dir: receives ``metrics.json``, ``structure.csv``, ``report.md`` and ``plots/``.
        label_columns: the manifest's label columns (the dataset's ``label_columns``), for label
            retrieval in the benchmark; None leaves retrieval out.

    Returns:
        the metrics written to ``metrics.json``.
    """
    torch.set_num_threads(eval_cfg.num_threads)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    tracks = manifest_io.read(manifest_path)
    table = pd.read_csv(triplets_path)
    metrics, structure_frames, example_ssms, models = {}, [], {}, {}
    with FeatureStore(store_path) as store:
        test_ids = [t for t in tracks.loc[tracks["split"] == "test", "track_id"] if t in store]
        runs = list_runs(runs_dir)
        for run in runs:
            model, meta = load_checkpoint(run / "model.pt")
            variant = meta["variant"]
            models[variant] = model
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
        labels = None if not label_columns else pd.Series(
            manifest_io.label_key(tracks, list(label_columns)).to_numpy(), index=tracks["track_id"])
        summary = run_benchmark(models, store, tracks, table, eval_cfg, results_dir, labels)
    metrics = {"variants": metrics, "benchmark": summary}
    structure = pd.concat(structure_frames, ignore_index=True).merge(
        tracks[["track_id", "mood", "style"]], on="track_id", how="left")
    structure.to_csv(results_dir / "structure.csv", index=False)
    (results_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    report.write_report(metrics["variants"], structure, [run / "history.csv" for run in runs],
                        example_ssms, results_dir, eval_cfg.segment_seconds)
    with open(results_dir / "report.md", "a") as fh:
        fh.write("\n## Held-out benchmark\n\n" + (results_dir / "benchmark.md").read_text())
        robustness = pd.read_csv(results_dir / "decode_robustness.csv")
        fh.write("\n### Decoded as songfeel vs as MECOMP\n\n" + robustness.to_markdown(index=False, floatfmt=".3f") + "\n")
    return metrics


def run_benchmark(models: dict, store: FeatureStore, tracks: pd.DataFrame, table: pd.DataFrame, eval_cfg,
                  results_dir: Path, labels: pd.Series | None = None) -> dict:
    """The held-out benchmark (:mod:`songfeel.benchmark`): writes ``benchmark.csv``, ``benchmark.md``,
    ``baselines_skipped.csv`` and ``decode_robustness.csv`` under ``results_dir``.

    A baseline that cannot run here (bliss or the MECOMP model missing) is logged and left out.

    Returns:
        a summary for ``metrics.json``: accuracy and CI per method, triplets and songs left out,
        robustness per variant.
    """
    triplets = benchmark.heldout_triplets(table)
    test_ids = sorted(set(triplets.to_numpy().ravel()) & set(store.track_ids))
    paths = dict(zip(tracks["track_id"], tracks["path"]))
    train_ids = [t for t in tracks.loc[tracks["split"] == "train", "track_id"] if t in store]
    variants = {name: benchmark.variant_vectors(model, store, test_ids, eval_cfg.batch_size) for name, model in models.items()}
    found, skipped = {}, []
    if "mfcc" in eval_cfg.baselines:
        found["mfcc"] = benchmark.mfcc_vectors(store, train_ids, test_ids)
    if "bliss" in eval_cfg.baselines:
        vectors, failed = baselines.bliss_features({t: paths[t] for t in test_ids}, n_jobs=eval_cfg.num_threads)
        found["bliss"] = vectors
        skipped.append(failed.assign(method="bliss"))
    if "mecomp" in eval_cfg.baselines:
        onnx_path = Path(eval_cfg.mecomp_onnx)
        if onnx_path.is_file():
            vectors, failed = baselines.mecomp_embeddings({t: paths[t] for t in test_ids}, onnx_path)
            found["mecomp"] = vectors
            skipped.append(failed.assign(method="mecomp"))
        else:
            log.warning("%s not found: the MECOMP baseline is left out (see ../shared/DATA.md)", onnx_path)
    result, n_left_out = benchmark.benchmark_table(variants, found, triplets, eval_cfg.bootstrap_resamples, seed=0,
                                                   labels=labels, k=eval_cfg.retrieval_k)
    result.to_csv(results_dir / "benchmark.csv", index=False)
    (results_dir / "benchmark.md").write_text(
        f"Test label triplets (whole songs), {len(test_ids)} test songs; {n_left_out} triplets left out because "
        "a method could not analyse one of their songs. 95 % CI: cluster bootstrap over anchor songs. "
        f"Retrieval: the songs of these triplets query each other by label; precision@{eval_cfg.retrieval_k}.\n\n"
        + benchmark.markdown_table(result))
    skipped_table = pd.concat(skipped, ignore_index=True) if skipped else pd.DataFrame(columns=["track_id", "path", "error", "method"])
    skipped_table.to_csv(results_dir / "baselines_skipped.csv", index=False)
    robust_ids = test_ids[: eval_cfg.robustness_songs]
    robustness = benchmark.decode_robustness(models, {t: paths[t] for t in robust_ids}, store.config)
    robustness.to_csv(results_dir / "decode_robustness.csv", index=False)
    for row in result.itertuples():
        log.info("benchmark %-20s %.3f [%.3f, %.3f] on %d triplets", row.method, row.accuracy, row.ci_low, row.ci_high, row.n_triplets)
    # Keyed by method and variant (no lists), so that `dvc metrics show` and `dvc metrics diff` list every figure.
    return {
        "methods": {row["method"]: {k: v for k, v in row.items() if k not in ("method", "kind")}
                    for row in result.to_dict(orient="records")},
        "n_triplets_left_out": n_left_out,
        "n_songs_skipped": int(len(skipped_table)),
        "decode_robustness": {row["variant"]: {k: v for k, v in row.items() if k != "variant"}
                              for row in robustness.to_dict(orient="records")},
    }
