import json
import math
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from test_models import model_cfg

from songfeel import manifest
from songfeel.baselines import bliss
from songfeel.baselines.bliss import bliss_available
from songfeel.embed import embed_excerpts
from songfeel.evaluate import evaluate_runs, segment_excerpts
from songfeel.models.embedder import build_embedder, load_checkpoint
from songfeel.store import FeatureStore
from songfeel.triplets import build_triplets


def dpkg_installed(package: str) -> bool:
    return subprocess.run(["dpkg", "-s", package], capture_output=True).returncode == 0


def test_segments_cover_whole_segments_only(small_store):
    path, rows = small_store
    with FeatureStore(path) as store:
        track_id = rows.iloc[0]["track_id"]
        segments = segment_excerpts(store, track_id, 5.0)
        length = store.config.seconds_to_frames(5.0)
        assert len(segments) == store.n_frames(track_id) // length
        assert all(stop - start == length for _, start, stop in segments)
        assert segment_excerpts(store, track_id, 60.0) == []


def evaluation_inputs(tmp_path, small_store, feature_config):
    """Two tiny random variants, triplets with listener answers, and an eval config: (store, triplets, manifest, cfg)."""
    store_path, rows = small_store
    manifest_path = tmp_path / "manifest.csv"
    manifest.write(rows, manifest_path)
    durations = dict(zip(rows["track_id"], rows["duration_seconds"] - 0.1))
    triplets, _ = build_triplets(rows, durations, ["mood", "style"], 1, 2, 8.0, seed=0)
    # two listener answers on test songs (whole songs), as stage 03 writes them: the "human" source
    human = triplets[(triplets["split"] == "test") & (triplets["kind"] == "label")].head(2).assign(
        kind="human", detail="votes=2/3")
    triplets = pd.concat([triplets, human], ignore_index=True)
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
    eval_cfg = OmegaConf.create({
        "segment_seconds": 5.0, "batch_size": 4, "num_threads": 1, "ssm_examples": 2, "matched_segments": 3,
        "splits": ["val", "test"], "seed": 0, "baselines": ["mfcc", "bliss"],
        "bootstrap_resamples": 200, "robustness_songs": 2, "retrieval_k": 2, "cost_songs": 1, "cost_repeats": 1,
        "neighbour_queries": 2, "neighbour_k": 2, "bliss_cache": None,
        "reference": {"enabled": True, "human_packages": ["extremetuxracer-data"], "min_seconds": 60.0,
                      "max_songs": 2}})
    return store_path, triplets, manifest_path, eval_cfg


def test_evaluation_writes_metrics_and_plots(tmp_path, small_store, feature_config):
    store_path, triplets, manifest_path, eval_cfg = evaluation_inputs(tmp_path, small_store, feature_config)
    rows = small_store[1]
    results = tmp_path / "results"
    metrics = evaluate_runs(tmp_path / "runs", store_path, tmp_path / "triplets.csv", manifest_path, eval_cfg, results,
                            ["mood", "style"])
    # flat, numeric, and what was written
    assert json.loads((results / "metrics.json").read_text()) == metrics
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())
    bliss_cause = bliss_available()  # None where bliss runs; else it is not measured on this machine (below)
    methods = {"chunked-gru", "chunked-attention", "random-init", "mfcc"} | (
        {"bliss", "bliss-grouped"} if bliss_cause is None else set())
    scores = pd.read_csv(results / "scores.csv")
    assert set(scores["method"]) == methods
    assert set(zip(scores["split"], scores["source"])) == {("val", "label"), ("val", "self"), ("test", "label"),
                                                           ("test", "self"), ("test", "human")}
    # every method scores the listeners' whole-song answers
    assert set(scores.loc[scores["source"] == "human", "method"]) == methods
    assert (scores.loc[scores["source"] == "human", "n_triplets"] == 2).all()
    # whole-song baselines do not score excerpt (self) triplets
    assert set(scores.loc[scores["source"] == "self", "method"]) == {"chunked-gru", "chunked-attention",
                                                                     "random-init", "mfcc"}
    for method in methods:
        assert f"triplets/test/label/{method}/accuracy" in metrics
    # one variant's test label accuracy agrees with a brute-force computation on its whole-song embeddings
    test_label = triplets[(triplets["split"] == "test") & (triplets["kind"] == "label")]
    model, _ = load_checkpoint(tmp_path / "runs" / "chunked-gru" / "model.pt")
    with FeatureStore(store_path) as store:
        songs = sorted(set(test_label[["anchor_track", "positive_track", "negative_track"]].to_numpy().ravel()))
        vectors = dict(zip(songs, embed_excerpts(model, store, [(t, 0, store.n_frames(t)) for t in songs])))
    correct = [np.linalg.norm(vectors[a] - vectors[p]) < np.linalg.norm(vectors[a] - vectors[n])
               for a, p, n in test_label[["anchor_track", "positive_track", "negative_track"]].to_numpy()]
    assert metrics["triplets/test/label/chunked-gru/accuracy"] == pytest.approx(np.mean(correct), abs=1e-9)
    assert metrics["triplets/test/label/chunked-gru/n_triplets"] == len(test_label)
    retrieval = pd.read_csv(results / "retrieval.csv")
    assert set(retrieval["split"]) == {"val", "test"} and retrieval["precision_at_k"].between(0, 1).all()
    benchmark = pd.read_csv(results / "benchmark.csv", keep_default_na=False, na_values=[""])
    measured = benchmark[benchmark["note"].isna()]
    assert set(measured["method"]) == methods and (measured["n_triplets"] == len(test_label)).all()
    if bliss_cause is not None:
        assert_not_measured(results, bliss_cause)

    consistency = pd.read_csv(results / "consistency.csv")
    test_ids = set(rows.loc[rows["split"] == "test", "track_id"])
    own = consistency[consistency["track_id"].isin(test_ids)]
    assert len(own) == len(test_ids) * 3 and set(own["origin"]) == {"ai"}  # 2 variants + random-init
    assert own["sdc"].between(-1, 1).all() and own["vendi_score"].between(1, 7).all()
    if dpkg_installed("extremetuxracer-data"):
        human = consistency[consistency["origin"] == "human"]
        assert human["track_id"].nunique() == 2 and human["n_segments"].min() >= 12
        assert "consistency/chunked-gru/human/median_matched_sdc" in metrics
    costs = pd.read_csv(results / "cost.csv")
    assert {"chunked-gru", "chunked-attention", "random-init"} <= set(costs["method"])
    assert (costs["x_real_time"] > 0).all()

    report = (results / "report.md").read_text()
    for section in ("Leaderboard", "Held-out benchmark", "Structure", "Nearest neighbours", "Cost"):
        assert section in report
    plots = sorted((results / "plots").glob("*.png"))
    assert {"leaderboard.png", "training_curves.png", "ssm_examples.png"} <= {p.name for p in plots}
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    for link in re.findall(r"\]\((plots/[^)]+)\)", report):
        assert (results / link).is_file(), link
    robustness = pd.read_csv(results / "decode_robustness.csv")
    assert list(robustness["n_songs"]) == [2, 2]
    assert robustness[["same_song_cosine", "other_song_cosine"]].abs().le(1 + 1e-6).all().all()


def assert_not_measured(results, cause: str) -> None:
    """bliss is reported, never silently missing: in the skipped file, the benchmark and every report table."""
    skipped = pd.read_csv(results / "baselines_skipped.csv", keep_default_na=False)
    whole = skipped[skipped["scope"] == "baseline"]
    assert whole[["method", "track_id", "path", "error"]].to_dict(orient="records") == [
        {"method": "bliss", "track_id": "", "path": "", "error": cause}]
    benchmark = pd.read_csv(results / "benchmark.csv", keep_default_na=False, na_values=[""]).set_index("method")
    for method in ("bliss", "bliss-grouped"):
        assert benchmark.loc[method, "note"] == f"not measured on this machine: {cause}"
        assert np.isnan(benchmark.loc[method, "accuracy"])
        assert f"| {method} | baseline | - | not measured on this machine: {cause} |" in \
            (results / "benchmark.md").read_text()
    report = (results / "report.md").read_text()
    assert f"- **bliss**: {cause}" in report
    for section in ("## Leaderboard", "## Triplet accuracy by split and source", "## Retrieval"):
        table = report.split(section, 1)[1].split("\n## ", 1)[0]
        rows = [line for line in table.splitlines() if line.startswith("| bliss ")]
        assert rows and all(f"not measured on this machine: {cause}" in line for line in rows), section
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["counts/baselines_not_measured"] == 1
    assert not any("/bliss/" in key for key in metrics)


def test_a_baseline_whose_workers_die_by_sigill_is_left_out_and_the_evaluation_finishes(
        tmp_path, small_store, feature_config, monkeypatch):
    """A stand-in bliss worker kills itself with a real SIGILL on every file, as bliss-audio 0.2.0 does on a
    CPU without AVX-512: stage 05 still writes everything, with bliss named as not measured and why."""
    from tests.native_support import sigill_on_every_file

    store_path, triplets, manifest_path, eval_cfg = evaluation_inputs(tmp_path, small_store, feature_config)
    eval_cfg.baselines = ["bliss"]
    eval_cfg.num_threads = 2
    real = bliss.bliss_features
    monkeypatch.setattr(bliss, "bliss_features", lambda *a, **k: real(*a, **k, analyse=sigill_on_every_file))
    results = tmp_path / "results"
    metrics = evaluate_runs(tmp_path / "runs", store_path, tmp_path / "triplets.csv", manifest_path, eval_cfg,
                            results, ["mood", "style"])
    version = bliss.BLISS.version()
    # where the real probe passes, the stand-in workers die; elsewhere the probe dies first: the same cause
    assert_not_measured(results, f"bliss-audio {version} needs AVX-512 (illegal instruction, SIGILL); this CPU lacks it"
                        if version in bliss.BLISS.cpu_needs else bliss_available())
    assert metrics["triplets/test/label/chunked-gru/accuracy"] >= 0
    assert set(pd.read_csv(results / "scores.csv")["method"]) == {"chunked-gru", "chunked-attention", "random-init"}
    assert (results / "report.md").is_file() and (results / "plots" / "leaderboard.png").is_file()
