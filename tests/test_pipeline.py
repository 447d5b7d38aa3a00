"""End to end: the six numbered stages, and the segmentation stages of 03, 04 and 05, on 14 real demo tracks with tiny
settings, while a native baseline crashes: bliss's probe dies by a real SIGILL, as bliss-audio 0.2.0's does on a
CPU without AVX-512, and stage 05 must still finish and stage 06 export the model."""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from songfeel.audio import load_audio
from songfeel.segmentation.checkpoint import load_ssmnet
from songfeel.store import FeatureStore
from songfeel.teacher.targets import TeacherTargets

from conftest import REPO

pytestmark = pytest.mark.slow


#: A probe launcher that dies by SIGILL itself (see songfeel.native.PROBE_LAUNCHER_ENV): what every native
#: baseline's probe meets on a CPU that lacks its instruction set, on any CPU.
SIGILL_LAUNCHER = "sh -c 'kill -ILL $$' sh"


def run_stage(script: str, *overrides: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, str(REPO / script), *overrides], cwd=REPO, check=True, timeout=600,
                   env={**os.environ, **(env or {})})


def test_six_stages_produce_a_trained_exported_model(tmp_path):
    paths = [f"paths.data={tmp_path / 'data'}", f"paths.results={tmp_path / 'results'}"]
    run_stage("01_download_fma.py", *paths, "dataset.limit=14")
    run_stage("02_extract_features.py", *paths, "features.n_jobs=2")
    run_stage("02_teacher_targets.py", *paths, "teacher.n_jobs=2")
    run_stage("03_build_triplets.py", *paths, "triplets.label_per_anchor=2", "triplets.self_per_track=2")
    run_stage("04_train.py", "--multirun", "window=chunked,sliding", "head=gru", *paths,
              "train.epochs=2", "train.samples_per_epoch=32", "train.crop_windows=[4,8]")
    run_stage("04_train.py", "window=chunked", "head=gru", "loss=distill", *paths,  # the same with the teacher
              "train.epochs=2", "train.samples_per_epoch=32", "train.crop_windows=[4,8]")
    segmentation = ["segmentation.medleys.n.train=4", "segmentation.medleys.n.validation=2",
                    "segmentation.medleys.n.test=2", "segmentation.train.epochs=2", "segmentation.train.fresh_medleys=2",
                    "segmentation.pretrain.epochs=1", "segmentation.pretrain.crop_seconds=20"]
    run_stage("03_build_medleys.py", *paths, *segmentation)
    run_stage("04_train_segmentation.py", *paths, *segmentation)
    run_stage("05_evaluate_segmentation.py", *paths, *segmentation)
    run_stage("05_evaluate.py", *paths, env={"SONGFEEL_PROBE_LAUNCHER": SIGILL_LAUNCHER})
    run_stage("06_export.py", *paths, "export.parity_tracks=1")

    data, results = tmp_path / "data", tmp_path / "results"
    tracks = pd.read_csv(data / "manifest.csv")
    assert len(tracks) == 14 and set(tracks["split"]) == {"train", "val", "test"}
    with FeatureStore(data / "features.h5") as store:
        assert store.track_ids == sorted(tracks["track_id"])
    triplets = pd.read_csv(data / "triplets.csv")
    assert set(triplets["kind"]) == {"label", "self"}
    assert sorted(p.name for p in (data / "runs").iterdir()) == ["chunked-gru", "chunked-gru-distill", "sliding-gru"]
    distilled = pd.read_csv(data / "runs" / "chunked-gru-distill" / "history.csv")
    assert (distilled["distill_loss"] > 0).all() and (distilled["relational_loss"] > 0).all()
    with TeacherTargets(data / "teacher.h5") as teacher:
        assert teacher.track_ids == sorted(tracks["track_id"])

    metrics = json.loads((results / "metrics.json").read_text())
    for variant in ("chunked-gru", "chunked-gru-distill", "sliding-gru", "random-init", "teacher"):
        assert 0 <= metrics[f"triplets/test/label/{variant}/accuracy"] <= 1
        assert metrics[f"cost/{variant}/x_real_time"] > 0  # the teacher's as its stage measured it
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # flat, for dvc metrics show/diff
    assert (results / "plots" / "leaderboard.png").is_file()
    # segmentation: SSM-Net and the baselines on the same 2 test medleys, scored by mir_eval, in their own files
    segmented = results / "segmentation"
    seg_metrics = json.loads((segmented / "metrics.json").read_text())
    assert not any(key.startswith("segmentation/") for key in metrics)  # stage 05 of the embeddings does not segment
    for method in ("ssmnet", "fusion", "foote_mfcc", "foote_logmel", "laplacian"):
        assert seg_metrics[f"segmentation/{method}/n_songs"] == 2
        assert 0 <= seg_metrics[f"segmentation/{method}/hr_3f"] <= 1
    per_song = pd.read_csv(segmented / "per_song.csv")
    assert per_song.groupby("method")["song_id"].apply(set).map(len).eq(2).all()
    assert len(list((segmented / "plots").glob("*.png"))) == 2
    assert "ssmnet" in (segmented / "summary.md").read_text()
    assert "ssmnet minus" in (segmented / "summary.md").read_text()
    for baseline in ("foote_mfcc", "foote_logmel", "laplacian"):  # paired differences on the same medleys
        assert -1 <= seg_metrics[f"segmentation/ssmnet_minus_{baseline}/hr_3f_trim_diff"] <= 1
    # peak picking chosen per novelty method on the 2 validation medleys, then used on the test ones
    tuning = pd.read_csv(segmented / "tuning.csv")
    assert tuning.groupby("method")["chosen"].sum().to_dict() == {"ssmnet": 1, "fusion": 1, "foote_mfcc": 1,
                                                                  "foote_logmel": 1}
    assert seg_metrics["segmentation/tuned/fusion/weight"] in (0.25, 0.5, 0.75)  # eval.tune.fusion_weights
    assert -1 <= seg_metrics["segmentation/fusion_minus_foote_mfcc/hr_3f_trim_diff"] <= 1
    for method in ("ssmnet", "foote_mfcc", "foote_logmel"):
        chosen = tuning[(tuning["method"] == method) & tuning["chosen"]].iloc[0]
        assert seg_metrics[f"segmentation/tuned/{method}/threshold_ratio"] == chosen["threshold_ratio"]
    assert len(pd.read_csv(data / "medleys" / "train" / "sources.csv")) >= 2  # the fresh medleys' sources
    # the encoder was first pretrained on the teacher's targets of those songs, one epoch
    _, ssmnet_config = load_ssmnet(data / "segmentation" / "ssmnet.pt")
    assert len(ssmnet_config["pretrain_history"]) == 1 and ssmnet_config["pretrain_history"][0]["teacher_loss"] > 0
    # the validation ranking names the method the segment command takes
    ranked = {key.split("/")[2] for key in seg_metrics if key.startswith("segmentation/validation/")}
    assert ranked == {"ssmnet", "fusion", "foote_mfcc", "foote_logmel"} and "segments with **" in (segmented / "summary.md").read_text()
    assert sorted(p.name for p in (results / "training").iterdir()) == ["chunked-gru-distill.csv", "chunked-gru.csv",
                                                                        "sliding-gru.csv"]
    benchmark = pd.read_csv(results / "benchmark.csv", keep_default_na=False, na_values=[""])
    measured = benchmark[benchmark["note"].isna()]
    assert {"chunked-gru", "chunked-gru-distill", "sliding-gru", "mfcc", "teacher"} <= set(measured["method"])
    assert ((measured["ci_low"] <= measured["accuracy"]) & (measured["accuracy"] <= measured["ci_high"])).all()
    # how much of the teacher each method keeps, paired with the teacher on the same test triplets
    share = pd.read_csv(results / "teacher_share.csv").set_index("method")
    assert {"chunked-gru", "chunked-gru-distill", "mfcc"} <= set(share.index) and "teacher" not in share.index
    teacher_accuracy = measured.set_index("method").loc["teacher", "accuracy"]
    assert (share["teacher_accuracy"] == teacher_accuracy).all()
    assert np.allclose(share["diff_vs_teacher"], share["accuracy"] - teacher_accuracy)
    assert "## How much of the teacher each method keeps" in (results / "report.md").read_text()
    # the crashed baseline: named, with its cause, in the skipped file, the benchmark and the report
    cause = "illegal instruction, SIGILL"
    skipped = pd.read_csv(results / "baselines_skipped.csv", keep_default_na=False)
    assert skipped.loc[skipped["scope"] == "baseline", "method"].tolist() == ["bliss"]
    assert cause in skipped.loc[skipped["scope"] == "baseline", "error"].iloc[0]
    not_measured = benchmark[benchmark["note"].notna()].set_index("method")["note"]
    assert sorted(not_measured.index) == ["bliss", "bliss-grouped"]
    assert not_measured.str.startswith("not measured on this machine: bliss-audio").all()
    assert not_measured.str.contains(cause).all()
    assert "## Baselines not measured on this machine" in (results / "report.md").read_text()
    assert metrics["counts/baselines_not_measured"] == 1

    export = json.loads((results / "export.json").read_text())
    assert export["winner"] == max(export["candidates"], key=export["candidates"].get)
    assert export["parity_max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(results / "model.onnx"), providers=["CPUExecutionProvider"])
    songs = [load_audio(p) for p in tracks["path"][:2]]
    length = min(len(s) for s in songs)
    out = session.run(["embedding"], {"audio": np.stack([s[:length] for s in songs])})[0]
    assert out.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
