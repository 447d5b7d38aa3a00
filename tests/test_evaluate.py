import json
import math

import numpy as np
import pandas as pd
import torch

from songfeel import manifest
from songfeel.evaluate import evaluate_runs, segment_excerpts
from songfeel.models.embedder import build_embedder
from songfeel.store import FeatureStore
from songfeel.triplets import build_triplets
from omegaconf import OmegaConf
from test_models import model_cfg


def test_segments_cover_whole_segments_only(small_store):
    path, rows = small_store
    with FeatureStore(path) as store:
        track_id = rows.iloc[0]["track_id"]
        segments = segment_excerpts(store, track_id, 5.0)
        length = store.config.seconds_to_frames(5.0)
        assert len(segments) == store.n_frames(track_id) // length
        assert all(stop - start == length for _, start, stop in segments)
        assert segment_excerpts(store, track_id, 60.0) == []


def test_evaluation_writes_metrics_and_plots(tmp_path, small_store, feature_config):
    store_path, rows = small_store
    manifest_path = tmp_path / "manifest.csv"
    manifest.write(rows, manifest_path)
    durations = dict(zip(rows["track_id"], rows["duration_seconds"] - 0.1))
    triplets, _ = build_triplets(rows, durations, ["mood", "style"], 1, 2, 8.0, seed=0)
    triplets.to_csv(tmp_path / "triplets.csv", index=False)
    for name in ("chunked-gru", "chunked-attention"):
        torch.manual_seed(0)
        cfg = model_cfg(*name.split("-"))
        model = build_embedder(cfg, feature_config)
        (tmp_path / "runs" / name).mkdir(parents=True)
        torch.save({"state_dict": model.state_dict(), "config": OmegaConf.to_container(cfg),
                    "features": feature_config.to_dict(), "variant": name, "epoch": 1,
                    "val_triplet_accuracy": 0.5}, tmp_path / "runs" / name / "model.pt")
        pd.DataFrame({"epoch": [1], "train_loss": [0.3], "val_accuracy": [0.5]}).to_csv(
            tmp_path / "runs" / name / "history.csv", index=False)
    eval_cfg = OmegaConf.create({"segment_seconds": 5.0, "batch_size": 4, "num_threads": 1, "ssm_examples": 2,
                                 "baselines": ["mfcc", "bliss"], "mecomp_onnx": "", "bootstrap_resamples": 200,
                                 "robustness_songs": 2, "retrieval_k": 2})
    results = tmp_path / "results"
    everything = evaluate_runs(tmp_path / "runs", store_path, tmp_path / "triplets.csv", manifest_path, eval_cfg, results,
                               ["mood", "style"])
    assert json.loads((results / "metrics.json").read_text()) == everything
    metrics = everything["variants"]
    assert sorted(metrics) == ["chunked-attention", "chunked-gru"]
    for entry in metrics.values():
        assert 0 <= entry["test_triplet_accuracy"] <= 1
        assert -1 <= entry["mean_sdc"] <= 1 and 1 <= entry["mean_vendi_score"] <= 6
        assert entry["n_test_tracks"] == (rows["split"] == "test").sum()
    structure = pd.read_csv(results / "structure.csv")
    assert len(structure) == 2 * entry["n_test_tracks"] and set(structure["mood"]) <= set(rows["mood"])
    for plot in ("triplet_accuracy", "structure", "training_curves", "ssm_examples"):
        assert (results / "plots" / f"{plot}.png").stat().st_size > 5000
    report = (results / "report.md").read_text()
    assert "Leaderboard" in report and "Held-out benchmark" in report
    benchmark = pd.read_csv(results / "benchmark.csv")
    assert sorted(benchmark["method"]) == ["bliss", "chunked-attention", "chunked-gru", "mfcc"]
    test_label = triplets[(triplets["split"] == "test") & (triplets["kind"] == "label")]
    assert (benchmark["n_triplets"] == len(test_label)).all()  # every method scored on the same triplets
    summary = everything["benchmark"]["methods"]
    assert sorted(summary) == sorted(benchmark["method"])
    assert all(s["ci_low"] <= s["accuracy"] <= s["ci_high"] for s in summary.values())
    assert all(s["odd_one_out_ci_low"] <= s["odd_one_out"] <= s["odd_one_out_ci_high"] for s in summary.values())
    assert all(0 <= s["precision_at_k"] <= 1 and 0 <= s["map"] <= 1 for s in summary.values())
    robustness = pd.read_csv(results / "decode_robustness.csv")
    assert list(robustness["n_songs"]) == [2, 2]
    # untrained models map every song close together, so only the ranges are checked here
    assert robustness[["same_song_cosine", "other_song_cosine"]].abs().le(1 + 1e-6).all().all()
    assert robustness["retrieval_at_1"].between(0, 1).all()
    assert not any(math.isnan(v) for v in structure["sdc"]) and np.isfinite(structure["vendi_score"]).all()
