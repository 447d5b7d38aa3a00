"""The structure stage on real demo songs: config, medleys by manifest split, training, evaluation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from conftest import tiny_structure_config as tiny_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.errors import ManifestError
from songfeel.segmentation import training
from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.checkpoint import load_ssmnet, save_ssmnet
from songfeel.segmentation.config import feature_config, model_config, train_config
from songfeel.segmentation.dataset import (
    build_medley_benchmark,
    fresh_songs,
    load_medley_songs,
    medley_sampler,
    medley_songs,
)
from songfeel.segmentation.evaluation import SCORE_KEYS
from songfeel.segmentation.features import StructureFeatureConfig, patch_times
from songfeel.segmentation.infer import segment_audio
from songfeel.segmentation.scoring import (
    CI_KEYS,
    evaluate_medleys,
    evaluate_songs,
    paired_differences,
    paired_metrics,
    score_methods,
    segmentation_metrics,
    summarize,
)
from songfeel.segmentation.ssmnet import (
    SSMNetConfig,
    novelty_loss,
    ssm_loss,
    total_loss,
)
from songfeel.segmentation.tables import comparison_report, paired_markdown, summary_markdown
from songfeel.segmentation.training import train_ssmnet
from songfeel.segmentation.tuning import peak_grid, read_tuning, tune_on_songs, tuned_markdown, with_tuned_peaks

pytestmark = pytest.mark.filterwarnings("ignore:Passing a schema to Validator:DeprecationWarning",
                                        "ignore:Estimated intervals are empty:UserWarning")
torch.set_num_threads(1)

METHODS = ["ssmnet", "foote_mfcc", "foote_logmel", "laplacian"]


@pytest.fixture(scope="module")
def sources(demo_manifest):
    """Two real demo songs of each manifest split (train, val, test)."""
    rows = demo_manifest.groupby("split", group_keys=False).head(2).reset_index(drop=True)
    assert sorted(set(rows["split"])) == ["test", "train", "val"]
    return rows


@pytest.fixture(scope="module")
def benchmark(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("medleys")
    medleys, skipped = build_medley_benchmark(sources, out, tiny_config())
    return out, medleys, skipped


@pytest.fixture(scope="module")
def songs(benchmark):
    _, medleys, _ = benchmark
    return {split: load_medley_songs(medleys[medleys["split"] == split], tiny_config(), progress=False)
            for split in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def trained(songs, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "ssmnet.pt"
    history = train_ssmnet(songs["train"], songs["validation"], tiny_config(), path, progress=False)
    return history, path


# --- config -------------------------------------------------------------------------------------


def test_config_group_composes_into_the_main_config():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config")
    structure = cfg.segmentation
    assert structure.paths.medleys == f"{cfg.paths.data}/medleys"
    assert structure.paths.checkpoint.startswith(cfg.paths.data)
    assert set(structure.medleys.split_names) == {"train", "val", "test"}  # the manifest's own split names
    assert dict(structure.medleys.n) == {"train": 40, "validation": 24, "test": 40}
    # The front end is the paper's (arXiv 2309.02243, section 3.1) with 1.86 s patches (20 steps):
    # its 3.72 s ones blurred the demo's boundaries. The model follows the front end.
    paper = StructureFeatureConfig(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=80, fmax=8000.0,
                                   log_gain=100.0, step_seconds=0.1, patch_steps=40, patch_hop_steps=5)
    assert feature_config(structure) == dataclasses.replace(paper, patch_steps=20)
    net = model_config(structure)
    assert (net.n_mels, net.patch_steps) == (80, 20)
    assert net.patch_hop_seconds == pytest.approx(paper.patch_hop_seconds)
    assert train_config(structure).alpha == 0.5
    assert structure.train.select_by in ("val_hr_3f", "val_loss")


def test_model_config_rejects_a_patch_shape_other_than_the_features():
    cfg = OmegaConf.merge(tiny_config(), {"model": {"n_mels": 64}})
    with pytest.raises(ValueError, match="model.n_mels = 64"):
        model_config(cfg)


# --- medleys --------------------------------------------------------------------------------------


def test_medleys_keep_the_manifest_split_of_their_source_songs(benchmark, sources):
    out, medleys, skipped = benchmark
    assert skipped.empty
    assert medleys["split"].value_counts().to_dict() == {"train": 3, "validation": 2, "test": 2}
    songs_of = {"train": set(sources.loc[sources["split"] == "train", "path"]),
                "validation": set(sources.loc[sources["split"] == "val", "path"]),
                "test": set(sources.loc[sources["split"] == "test", "path"])}
    for row in medleys.itertuples():
        assert set(row.sources.split(";")) <= songs_of[row.split], row.medley_id
        assert (out / row.split / f"{row.medley_id}.flac").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv"), medleys, check_dtype=False)


def test_medleys_need_songs_in_every_requested_split(sources, tmp_path):
    with pytest.raises(ValueError, match="no 'val' songs for the 2 validation medleys"):
        build_medley_benchmark(sources[sources["split"] != "val"], tmp_path, tiny_config())
    with pytest.raises(ManifestError, match="split"):
        build_medley_benchmark(sources.drop(columns="split"), tmp_path, tiny_config())
    twice = pd.concat([sources, sources[sources["split"] == "train"].head(1).assign(split="test")],
                      ignore_index=True)
    with pytest.raises(ManifestError, match="more than one split"):
        build_medley_benchmark(twice, tmp_path, tiny_config())


def test_medley_songs_carry_targets_on_the_patch_grid(songs, benchmark):
    _, medleys, _ = benchmark
    features = feature_config(tiny_config())
    for song in songs["train"] + songs["test"]:
        n = song.patches.shape[0]
        assert song.patches.shape == (n, features.patch_steps, features.n_mels)
        np.testing.assert_allclose(song.times, patch_times(n, features))
        assert song.times[-1] < song.reference.duration
        # Same label <=> 1 in the SSM, computed here from the intervals directly.
        segment = np.searchsorted(song.reference.intervals[:, 0], song.times, side="right") - 1
        labels = np.array(song.reference.labels)[segment]
        np.testing.assert_array_equal(song.ssm, (labels[:, None] == labels[None, :]).astype(np.float32))
        # The novelty target is 1 at the frame nearest each boundary and small far from all.
        for boundary in song.reference.boundaries():
            assert song.novelty[np.argmin(np.abs(song.times - boundary))] == pytest.approx(1.0)
        far = np.min(np.abs(song.times[:, None] - song.reference.boundaries()[None, :]), axis=1) > 4.0
        assert (song.novelty[far] < 0.01).all()
    assert [s.song_id for s in songs["test"]] == list(medleys.loc[medleys["split"] == "test", "medley_id"])


# --- training --------------------------------------------------------------------------------------


def _validation_losses(model, songs, cfg) -> float:
    alpha = train_config(cfg).alpha
    with torch.no_grad():
        losses = []
        for song in songs:
            out = model(torch.as_tensor(song.patches)[None])
            losses.append(total_loss(ssm_loss(out.ssm, torch.as_tensor(song.ssm)[None]),
                                     novelty_loss(out.novelty, torch.as_tensor(song.novelty)[None]), alpha).item())
    return float(np.mean(losses))


def test_training_keeps_the_best_validation_epoch_in_the_checkpoint(trained, songs):
    history, path = trained
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["total_loss"].iloc[-1] < history["total_loss"].iloc[0]
    assert history[["val_hr_0_5f", "val_hr_3f"]].stack().between(0, 1).all()
    # The tuning grid holds the configured peak picking, so its best can only match or beat it.
    assert (history["val_tuned"] >= (history["val_hr_0_5f"] + history["val_hr_3f"]) / 2 - 1e-12).all()
    assert history["selected"].sum() == 1
    best = history.sort_values(["val_hr_3f", "val_loss"], ascending=[False, True]).iloc[0]
    selected = history[history["selected"]].iloc[0]
    assert selected["epoch"] == best["epoch"]
    model, config = load_ssmnet(path)
    assert config["epoch"] == selected["epoch"]
    # The stored weights are those of the selected epoch: they reproduce its validation loss.
    assert _validation_losses(model, songs["validation"], tiny_config()) == pytest.approx(selected["val_loss"],
                                                                                         rel=1e-5)


@pytest.mark.parametrize(("select_by", "val_hr_0_5f", "val_hr_3f", "val_tuned", "val_loss", "best_epoch"), [
    ("val_loss", [0.5, 0.9, 0.1, 0.2], [0.5, 0.9, 0.1, 0.2], [0.9, 0.1, 0.1, 0.1], [0.5, 0.3, 0.4, 0.6], 2),
    ("val_hr_3f", [0.9, 0.1, 0.1, 0.1], [0.5, 0.8, 0.8, 0.6], [0.9, 0.1, 0.1, 0.1], [0.9, 0.7, 0.6, 0.5], 3),  # a tie
    ("val_hr_mean", [0.2, 0.3, 0.6, 0.6], [0.5, 0.8, 0.7, 0.7], [0.9, 0.1, 0.1, 0.1], [0.9, 0.7, 0.6, 0.5], 4),
    ("val_tuned", [0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1], [0.5, 0.6, 0.8, 0.7], [0.5, 0.3, 0.4, 0.6], 3),
])
def test_training_checkpoints_the_selected_epoch_of_a_seeded_run(songs, tmp_path, monkeypatch, select_by, val_hr_0_5f,
                                                                 val_hr_3f, val_tuned, val_loss, best_epoch):
    scripted = iter(zip(val_hr_0_5f, val_hr_3f, val_tuned, val_loss, strict=True))
    grids = []

    def fake_validate(model, val_songs, cfg, train_cfg, grid):
        grids.append(grid)
        half, three, tuned, loss = next(scripted)
        return {"val_ssm_loss": loss, "val_novelty_loss": loss, "val_loss": loss, "val_hr_0_5f": half,
                "val_hr_3f": three, "val_tuned": tuned}

    monkeypatch.setattr(training, "_validate", fake_validate)
    history = train_ssmnet(songs["train"], songs["validation"], tiny_config(select_by=select_by),
                                    tmp_path / "four.pt", progress=False)
    assert history.loc[history["selected"], "epoch"].tolist() == [best_epoch]
    # Validation tries the tuning grid without local refinement (no fine frames there).
    assert grids[0] == {key: list(values) for key, values in tiny_config().eval.tune.grid.items()
                        if key != "local_radius_seconds"}
    monkeypatch.undo()
    # The seeded run stopped at the selected epoch ends with the same weights as the checkpoint.
    short = train_ssmnet(songs["train"], [], tiny_config(epochs=best_epoch), tmp_path / "short.pt",
                                  progress=False)
    losses = ["ssm_loss", "total_loss"]
    pd.testing.assert_frame_equal(short[losses], history[losses].head(best_epoch))
    checkpoint, _ = load_ssmnet(tmp_path / "four.pt")
    stopped, _ = load_ssmnet(tmp_path / "short.pt")
    for name, value in checkpoint.state_dict().items():
        torch.testing.assert_close(value, stopped.state_dict()[name], rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="select_by"):
        train_ssmnet(songs["train"], songs["validation"], tiny_config(select_by="best"), tmp_path / "x.pt")
    untuned = tiny_config(select_by="val_tuned")
    untuned.eval.tune.enabled = False
    with pytest.raises(ValueError, match="val_tuned needs a peak-picking grid"):
        train_ssmnet(songs["train"], songs["validation"], untuned, tmp_path / "x.pt")
    pretrained = tiny_config()
    pretrained.pretrain.epochs = 2
    with pytest.raises(ValueError, match="pretrain.epochs > 0 needs the training songs' teacher targets"):
        train_ssmnet(songs["train"], songs["validation"], pretrained, tmp_path / "x.pt")


def test_weight_average_is_what_validation_sees_and_the_checkpoint_keeps(songs, tmp_path):
    history = train_ssmnet(songs["train"], songs["validation"], tiny_config(epochs=2, ema_decay=0.9),
                                    tmp_path / "ema.pt", progress=False)
    averaged, _ = load_ssmnet(tmp_path / "ema.pt")
    selected = history[history["selected"]].iloc[0]
    assert _validation_losses(averaged, songs["validation"], tiny_config()) == pytest.approx(selected["val_loss"],
                                                                                            rel=1e-5)
    train_ssmnet(songs["train"], songs["validation"], tiny_config(epochs=int(selected["epoch"])),
                          tmp_path / "plain.pt", progress=False)
    plain, _ = load_ssmnet(tmp_path / "plain.pt")
    differences = [(averaged.state_dict()[name] - value).abs().max().item()
                   for name, value in plain.state_dict().items() if value.is_floating_point()]
    assert max(differences) > 1e-4  # the average lags the last step's weights
    with pytest.raises(ValueError, match="ema_decay must be in"):
        train_ssmnet(songs["train"], [], tiny_config(ema_decay=1.5), tmp_path / "bad.pt", progress=False)


def test_checkpoint_round_trips_to_identical_outputs(trained, songs, tmp_path):
    _, path = trained
    model, config = load_ssmnet(path)
    copy_path = save_ssmnet(model, config, tmp_path / "copy.pt", epoch=config["epoch"])
    reloaded, config_again = load_ssmnet(copy_path)
    assert config_again["model"] == config["model"] and config_again["features"] == config["features"]
    assert SSMNetConfig.from_mapping(config["model"]) == reloaded.cfg
    patches = torch.as_tensor(songs["test"][0].patches)[None]
    with torch.no_grad():
        first, second = model(patches), reloaded(patches)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_structure_model_names_the_bad_file(tmp_path):
    with pytest.raises(ValueError, match="missing.pt: checkpoint not found"):
        load_ssmnet(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: cannot read checkpoint"):
        load_ssmnet(junk)


# --- segmentation and evaluation -----------------------------------------------------------------------


def test_segment_audio_covers_the_song_and_resamples(trained, benchmark):
    _, path = trained
    model, config = load_ssmnet(path)
    _, medleys, _ = benchmark
    rate = feature_config(config).sample_rate
    audio = load_audio(medleys["audio_path"].iloc[-1], rate)
    segmentation, details = segment_audio(model, audio, rate, config)
    duration = len(audio) / rate
    assert segmentation.duration == pytest.approx(duration)
    assert segmentation.intervals[0, 0] == 0 and segmentation.intervals[-1, 1] == pytest.approx(duration)
    np.testing.assert_allclose(segmentation.boundaries(), details.boundaries)
    n = len(details.times)
    assert details.ssm.shape == (n, n) and details.novelty.shape == (n,) and details.embeddings.shape[0] == n
    assert details.novelty.min() >= 0 and details.novelty.max() <= 1
    # The same song given at 16 kHz is resampled to the front end's rate: same frame grid.
    low = load_audio(medleys["audio_path"].iloc[-1], 16000)
    _, low_details = segment_audio(model, low, 16000, config)
    assert abs(len(low_details.times) - n) <= 1
    with pytest.raises(ValueError, match="silent"):
        segment_audio(model, np.zeros(10 * rate, dtype=np.float32), rate, config)
    with pytest.raises(ValueError, match="shorter than one patch"):
        segment_audio(model, audio[: rate], rate, config)


@pytest.fixture(scope="module")
def evaluated(trained, benchmark, tmp_path_factory):
    _, path = trained
    model, _ = load_ssmnet(path)
    _, medleys, _ = benchmark
    plots = tmp_path_factory.mktemp("plots")
    per_song, summary = evaluate_medleys(model, medleys[medleys["split"] == "test"], tiny_config(), plots,
                                           progress=False)
    return per_song, summary, plots, medleys


def test_evaluation_scores_every_method_on_the_same_songs(evaluated):
    per_song, summary, plots, medleys = evaluated
    test_ids = sorted(medleys.loc[medleys["split"] == "test", "medley_id"])
    assert list(dict.fromkeys(per_song["method"])) == METHODS
    for method in METHODS:
        assert sorted(per_song.loc[per_song["method"] == method, "song_id"]) == test_ids
    assert per_song[list(SCORE_KEYS)].stack().between(0, 1).all()
    assert (per_song["seconds"] > 0).all()
    assert (per_song["n_boundaries_reference"] >= 2).all()  # medleys have at least 3 sections
    assert list(summary.index) == METHODS and (summary["n_songs"] == len(test_ids)).all()
    for method in METHODS:
        rows = per_song[per_song["method"] == method]
        for key in CI_KEYS:
            assert summary.loc[method, key] == pytest.approx(rows[key].mean())
            assert summary.loc[method, f"{key}_ci_low"] <= summary.loc[method, key] + 1e-12
            assert summary.loc[method, key] <= summary.loc[method, f"{key}_ci_high"] + 1e-12
    assert sorted(p.name for p in plots.iterdir()) == [f"{test_ids[0]}.png"]  # n_plots = 1


def test_summary_table_and_metrics_report_the_summary(evaluated):
    _, summary, _, _ = evaluated
    table = summary_markdown(summary)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(METHODS) and lines[0].startswith("| method | songs |")
    for method, line in zip(METHODS, lines[2:], strict=True):
        assert line.startswith(f"| {method} |")
        assert f"{summary.loc[method, 'hr_3f_trim']:.3f} [" in line
    metrics = segmentation_metrics(summary)
    assert json.loads(json.dumps(metrics)) == metrics
    assert set(metrics) == set(METHODS)
    for method in METHODS:
        assert metrics[method]["hr_3f_trim"] == pytest.approx(summary.loc[method, "hr_3f_trim"], abs=1e-6)
        assert metrics[method]["n_songs"] == 2


def test_a_perfect_estimate_scores_one_and_a_single_segment_zero(songs):
    references = {song.song_id: song.reference for song in songs["test"]}
    single = {song: Segmentation.from_boundaries([], ["A"], ref.duration) for song, ref in references.items()}
    per_song = score_methods(references, {"oracle": references, "single": single})
    oracle = per_song[per_song["method"] == "oracle"]
    np.testing.assert_allclose(oracle[list(SCORE_KEYS)].to_numpy(), 1.0)
    summary = summarize(per_song, n_resamples=100, seed=0)
    assert summary.loc["oracle", ["hr_3f_trim", "hr_3f_trim_ci_low", "hr_3f_trim_ci_high"]].tolist() == [1.0] * 3
    assert summary.loc["single", "hr_3f_trim"] == 0.0 and summary.loc["single", "hr_0_5f_trim"] == 0.0
    with pytest.raises(KeyError, match="single: no estimate"):
        score_methods(references, {"single": dict(list(single.items())[:1])})


# --- fresh medleys every epoch ------------------------------------------------------------------


def test_fresh_medleys_differ_by_epoch_and_carry_their_targets(sources):
    cfg = tiny_config(augment={"crossfade_seconds": [0.2, 1.0], "gain_db": 3.0})
    sampler = medley_sampler(sources.loc[sources["split"] == "train", "path"], cfg, progress=False)
    first, again = fresh_songs(sampler, 1, 2, cfg), fresh_songs(sampler, 1, 2, cfg)
    second = fresh_songs(sampler, 2, 2, cfg)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.patches, b.patches)
    assert any(a.patches.shape != b.patches.shape or not np.array_equal(a.patches, b.patches)
               for a, b in zip(first, second, strict=True))
    for song in first + second:
        assert song.ssm.shape == (len(song.patches),) * 2 and song.novelty.shape == (len(song.patches),)
        inside = (song.times > 3.0) & (song.times < song.reference.duration - 3.0)
        # The target novelty peaks at the crossfade centres, where the SSM's blocks change.
        for boundary in song.reference.boundaries():
            near = np.argmin(np.abs(song.times - boundary))
            assert song.novelty[near] > 0.5 or not inside[near]


def test_training_on_fresh_medleys_alone_learns(sources, songs, tmp_path):
    cfg = tiny_config(fresh_medleys=3, epochs=3)
    sampler = medley_sampler(sources.loc[sources["split"] == "train", "path"], cfg, progress=False)
    with pytest.raises(ValueError, match="no training songs"):
        train_ssmnet([], songs["validation"], cfg, tmp_path / "none.pt", progress=False)
    history = train_ssmnet([], songs["validation"], cfg, tmp_path / "fresh.pt", progress=False,
                                    sampler=sampler)
    assert list(history["epoch"]) == [1, 2, 3] and history["selected"].sum() == 1
    assert history["total_loss"].iloc[-1] < history["total_loss"].iloc[0]


def test_paired_differences_compare_song_by_song():
    songs = [f"s{i}" for i in range(6)]
    base = np.array([0.2, 0.4, 0.5, 0.6, 0.8, 0.3])
    rows = []
    for method, shift in (("ssmnet", 0.1), ("foote_mfcc", 0.0), ("laplacian", 0.25)):
        for song, value in zip(songs, base, strict=True):
            rows.append({"method": method, "song_id": song, "hr_0_5f_trim": value + shift,
                         "hr_3f_trim": value + shift * (song != "s0"), "pairwise_f": value})
    per_song = pd.DataFrame(rows)
    differences = paired_differences(per_song, "ssmnet", n_resamples=300, seed=1)
    assert list(differences.index) == ["foote_mfcc", "laplacian"]
    # A constant shift has no song-to-song noise: the paired interval collapses onto it.
    assert differences.loc["foote_mfcc", "hr_0_5f_trim_diff"] == pytest.approx(0.1)
    assert differences.loc["foote_mfcc", "hr_0_5f_trim_diff_ci_low"] == pytest.approx(0.1)
    assert differences.loc["laplacian", "hr_0_5f_trim_diff_ci_high"] == pytest.approx(-0.15)
    assert differences.loc["foote_mfcc", "hr_3f_trim_diff"] == pytest.approx(0.5 / 6)
    assert 0.0 <= differences.loc["foote_mfcc", "hr_3f_trim_diff_ci_low"] < 0.5 / 6
    assert differences.loc["foote_mfcc", "pairwise_f_diff"] == pytest.approx(0.0)
    table = paired_markdown(differences)
    assert "| foote_mfcc | 6 | +0.100 [+0.100, +0.100] |" in table
    metrics = paired_metrics(differences)
    assert metrics["ssmnet_minus_laplacian/hr_0_5f_trim_diff"] == pytest.approx(-0.15)
    with pytest.raises(KeyError, match="not scored on the same songs"):
        paired_differences(per_song.drop(index=[0]), "ssmnet", 300, 1)
    with pytest.raises(KeyError, match="'bliss'"):
        paired_differences(per_song, "bliss", 300, 1)


def test_tuned_peak_picking_is_the_best_grid_point_and_evaluation_scores_it(trained, benchmark):
    """Tuning on the validation medleys, then evaluating them with the choice, gives the scores the tuner saw."""
    _, path = trained
    model, _ = load_ssmnet(path)
    _, medleys, _ = benchmark
    cfg = tiny_config()
    validation = medley_songs(medleys[medleys["split"] == "validation"])
    chosen, grid = tune_on_songs(model, validation, cfg, progress=False)
    keys = list(cfg.eval.tune.grid)
    assert set(chosen) == {"ssmnet", "fusion", "foote_mfcc", "foote_logmel"}
    n_weights = len(cfg.eval.tune.fusion_weights)  # one fused curve per weight, folded into the method fusion
    assert len(grid) == (3 + n_weights) * len(peak_grid(cfg.eval.tune.grid))
    for method, rows in grid.groupby("method"):
        best = rows[rows["chosen"]]
        assert len(best) == 1 and best["objective"].iloc[0] == rows["objective"].max()
        assert {key: chosen[method][key] for key in keys} == best[keys].iloc[0].to_dict()
    _, summary, skipped = evaluate_songs(model, validation, with_tuned_peaks(cfg, chosen), progress=False)
    assert skipped.empty
    for method in chosen:
        best = grid[(grid["method"] == method) & grid["chosen"]].iloc[0]
        assert summary.loc[method, "hr_0_5f_trim"] == pytest.approx(best["hr_0_5f_trim"])
        assert summary.loc[method, "hr_3f_trim"] == pytest.approx(best["hr_3f_trim"])


def test_the_fused_method_is_tuned_scored_and_read_back_like_the_others(trained, benchmark, tmp_path):
    """With eval.fusion switched on, SSM-Net's novelty fused with Foote-MFCC's is a method of its own: tuning
    and evaluation see the same fused curve, the choice round-trips through tuning.csv onto a checkpoint
    older than fusion, and the paired tables compare it with the baselines."""
    _, path = trained
    model, checkpoint_config = load_ssmnet(path)
    _, medleys, _ = benchmark
    cfg = OmegaConf.merge(tiny_config(), {"eval": {"tune": {"fusion_weights": [0.5, 1.0]}}})
    validation = medley_songs(medleys[medleys["split"] == "validation"])
    chosen, grid = tune_on_songs(model, validation, cfg, progress=False)
    assert set(chosen) == {"ssmnet", "fusion", "foote_mfcc", "foote_logmel"}
    fused_rows = grid[grid["method"] == "fusion"]
    assert len(fused_rows) == 2 * len(peak_grid(cfg.eval.tune.grid)) and (fused_rows["feature"] == "mfcc").all()
    assert grid.loc[grid["method"] != "fusion", "weight"].isna().all()
    best_by_weight = fused_rows.groupby("weight")["objective"].max()
    # Weight 1 is SSM-Net's own curve, scaled: peak picking, relative to the local mean, scores it the same.
    assert best_by_weight[1.0] == pytest.approx(grid.loc[grid["method"] == "ssmnet", "objective"].max())
    best = fused_rows[fused_rows["chosen"]]
    assert len(best) == 1 and best["objective"].iloc[0] == best_by_weight.max()
    assert chosen["fusion"]["weight"] == best["weight"].iloc[0] == best_by_weight.idxmax()
    assert chosen["fusion"]["feature"] == "mfcc"
    assert "fusion: SSM-Net's novelty (share" in tuned_markdown(chosen, list(cfg.eval.tune.grid))
    per_song, summary, _ = evaluate_songs(model, validation, with_tuned_peaks(cfg, chosen), progress=False)
    best = best.iloc[0]
    assert summary.loc["fusion", "hr_0_5f_trim"] == pytest.approx(best["hr_0_5f_trim"])
    assert summary.loc["fusion", "hr_3f_trim"] == pytest.approx(best["hr_3f_trim"])
    _, metrics, text = comparison_report(per_song, summary, cfg)
    assert "fusion_minus_foote_mfcc/hr_3f_trim_diff" in metrics and "ssmnet_minus_fusion/hr_3f_trim_diff" in metrics
    assert "| fusion minus |" in text

    grid.to_csv(tmp_path / "tuning.csv", index=False)
    assert checkpoint_config["eval"]["fusion"]["weight"] is None  # trained with fusion off
    # A checkpoint from before the fusion method: eval.ssmnet fills what the tuning table does not hold.
    older = {**checkpoint_config, "eval": {k: v for k, v in checkpoint_config["eval"].items() if k != "fusion"}}
    tuned = with_tuned_peaks(older, read_tuning(tmp_path / "tuning.csv"))
    song = load_audio(validation["audio_path"].iloc[0], int(cfg.features.sample_rate))
    rate = int(cfg.features.sample_rate)
    fused, _ = segment_audio(model, song, rate, tuned, method="fusion")
    expected, _ = segment_audio(model, song, rate, with_tuned_peaks(cfg, chosen), method="fusion")
    np.testing.assert_allclose(fused.intervals, expected.intervals)
    assert fused.source == "fusion"
    grid.loc[grid["method"] == "fusion", "weight"] = None
    grid.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(ValueError, match="broken.csv: the fusion row lacks its weight or feature"):
        read_tuning(tmp_path / "broken.csv")
    with pytest.raises(ValueError, match="the fusion method is switched off"):
        segment_audio(model, song, rate, checkpoint_config, method="fusion")
