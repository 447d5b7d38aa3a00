"""The teacher (musicnn, TensorFlow) on real demo tracks: its float32 log-mel, its checked checkpoint, the cached
targets, and a short real distillation run into a tiny student."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

from songfeel import manifest
from songfeel.audio import load_audio
from songfeel.teacher.musicnn import (
    PATCH_FRAMES,
    TEACHER_SAMPLE_RATE,
    MusicnnTeacher,
    TeacherLoadError,
    normalise_loudness,
    patch_starts,
    teacher_log_mel,
)
from songfeel.teacher.stage import write_teacher_store
from songfeel.teacher.targets import (
    CropTargets,
    TeacherTargets,
    pool_patches,
    teacher_song_vectors,
)

#: The real teacher config group, conf/teacher/musicnn.yaml.
TEACHER_CFG = OmegaConf.to_container(OmegaConf.load(REPO / "conf/teacher/musicnn.yaml"))


@pytest.fixture(scope="module")
def loud_song(demo_paths) -> np.ndarray:
    """A real demo track at 16 kHz, brought to -8 LUFS, as loud as mastered pop."""
    return normalise_loudness(load_audio(demo_paths[0], TEACHER_SAMPLE_RATE), TEACHER_SAMPLE_RATE, -8.0)


@pytest.fixture(scope="module")
def teacher() -> MusicnnTeacher:
    return MusicnnTeacher("MTT_vgg", ("tags", "pool5"))


def test_the_log_mel_stays_finite_on_a_loud_song_where_float16_overflows(loud_song):
    import librosa

    ours = teacher_log_mel(loud_song)
    assert ours.dtype == np.float32 and ours.shape[1] == 96 and np.isfinite(ours).all()
    # musicnn's own batch_data casts the mel power to float16 before "* 10000": inf on this song.
    mel = librosa.feature.melspectrogram(y=loud_song, sr=TEACHER_SAMPLE_RATE, n_fft=512, hop_length=256, n_mels=96).T
    with np.errstate(over="ignore"):
        theirs = np.log10(10000 * mel.astype(np.float16) + 1)
    assert np.isinf(theirs).any()
    # Ours is the float64 formula, to float32 rounding.
    np.testing.assert_allclose(ours, np.log10(10000 * mel.astype(np.float64) + 1), rtol=1e-5, atol=1e-6)


def test_loudness_normalisation_reaches_the_target(loud_song):
    import pyloudnorm

    quiet = normalise_loudness(loud_song * 0.1, TEACHER_SAMPLE_RATE, -14.0)  # 20 dB quieter in, -14 LUFS out
    assert pyloudnorm.Meter(TEACHER_SAMPLE_RATE).integrated_loudness(quiet.astype(np.float64)) == \
        pytest.approx(-14.0, abs=0.05)
    with pytest.raises(ValueError, match="0.4 s"):
        normalise_loudness(loud_song[:1000], TEACHER_SAMPLE_RATE, TEACHER_CFG["target_lufs"])


def test_a_checkpoint_that_does_not_load_is_an_error_naming_it(tmp_path):
    with pytest.raises(TeacherLoadError, match="nowhere"):
        MusicnnTeacher("MTT_vgg", checkpoint=f"{tmp_path}/nowhere/")


def test_a_restore_that_silently_keeps_random_weights_is_caught(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.compat.v1.train.Saver, "restore", lambda self, session, path: None)  # musicnn's bare except
    with pytest.raises(TeacherLoadError, match="differs from the checkpoint"):
        MusicnnTeacher("MTT_vgg")


def test_the_teacher_gives_tags_and_features_per_patch(teacher, loud_song):
    log_mel = teacher_log_mel(normalise_loudness(loud_song, TEACHER_SAMPLE_RATE, TEACHER_CFG["target_lufs"]))
    starts = patch_starts(log_mel.shape[0], 94)
    assert starts[0] == 0 and starts[-1] + PATCH_FRAMES <= log_mel.shape[0] < starts[-1] + PATCH_FRAMES + 94
    out = teacher.patches(log_mel, starts)
    assert out["tags"].shape == (len(starts), 50) and out["pool5"].shape == (len(starts), 256)
    assert ((out["tags"] >= 0) & (out["tags"] <= 1)).all() and np.isfinite(out["pool5"]).all()
    # The same patch gives the same outputs alone and in a batch.
    alone = teacher.patches(log_mel, starts[1:2])
    np.testing.assert_allclose(alone["tags"][0], out["tags"][1], atol=1e-5)
    assert patch_starts(PATCH_FRAMES - 1, 94).size == 0


@pytest.fixture(scope="module")
def teacher_store(tmp_path_factory, small_store):
    """The teacher targets of the 8 tracks of the small feature store, plus a broken file."""
    _, rows = small_store
    folder = tmp_path_factory.mktemp("teacher")
    broken = folder / "broken.ogg"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    tracks = pd.concat([rows[["track_id", "path"]], pd.DataFrame([{"track_id": "broken", "path": str(broken)}])])
    path = folder / "teacher.h5"
    skipped, summary = write_teacher_store(tracks, path, TEACHER_CFG, n_jobs=2, min_seconds=TEACHER_CFG["min_seconds"])
    return path, rows, skipped, summary, tracks


def test_the_teacher_stage_caches_every_track_and_reports_bad_files(teacher_store):
    path, rows, skipped, summary, tracks = teacher_store
    assert skipped["track_id"].tolist() == ["broken"] and "AudioDecodeError" in skipped["error"].iloc[0]
    assert summary["computed"] == len(rows) and summary["x_real_time_per_core"] > 1
    with TeacherTargets(path) as store:
        assert store.track_ids == sorted(rows["track_id"]) and store.outputs == ["tags", "pool5"]
        starts, targets = store.patches(rows["track_id"].iloc[0])
        assert targets.shape == (len(starts), 306) and np.allclose(np.diff(starts), 1.5, atol=0.02)
    # A rerun keeps every stored track and computes nothing.
    again_skipped, again = write_teacher_store(tracks, path, TEACHER_CFG, n_jobs=1,
                                               min_seconds=TEACHER_CFG["min_seconds"])
    assert again["kept"] == len(rows) and again["computed"] == 0 and again_skipped["track_id"].tolist() == ["broken"]


def test_crop_targets_pool_the_patches_a_crop_covers(teacher_store, feature_config):
    path, rows, *_ = teacher_store
    ids = rows["track_id"].tolist()
    targets = CropTargets(path, ids, ids[:4], feature_config.hop_length / feature_config.sample_rate)
    starts, raw = targets.tracks[ids[0]]
    # Patches whose centres lie in [3 s, 9 s]: starts 1.5, 3.0, 4.5, 6.0 (centres 3, 4.5, 6, 7.5).
    frames_per_second = feature_config.sample_rate / feature_config.hop_length
    crop = targets(ids[0], round(3.0 * frames_per_second), round(6.0 * frames_per_second))
    inside = (starts + 1.5 >= 3.0 - 1e-6) & (starts + 1.5 <= 9.0 + 1e-6)
    np.testing.assert_allclose(crop, (raw[inside].mean(axis=0) - targets.mean) / targets.std, rtol=1e-4, atol=1e-5)
    # A crop shorter than the hop takes the nearest patch.
    np.testing.assert_array_equal(pool_patches(starts, raw, 0.1, 0.2), raw[0])
    assert targets("not-a-track", 0, 10) is None


def test_a_short_real_distillation_lowers_the_distillation_loss(tmp_path, small_store, teacher_store):
    from conftest import REPO
    from hydra import compose, initialize_config_dir

    from songfeel.train import train_variant
    from songfeel.triplets import build_triplets

    store_path, rows = small_store
    durations = dict(zip(rows["track_id"], rows["duration_seconds"] - 0.1))
    table, _ = build_triplets(rows, durations, ["mood", "style"], 1, 3, excerpt_seconds=8.0, seed=0)
    table.to_csv(tmp_path / "triplets.csv", index=False)
    manifest_path = tmp_path / "manifest.csv"
    manifest.write(rows, manifest_path)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"paths.data={tmp_path}", f"paths.results={tmp_path}/results",
                                           "train.epochs=6", "train.patience=10", "train.batch_size=8",
                                           "train.crop_windows=[2,6]", "train.lr=1e-2", "loss=distill",
                                           "loss.triplet_weight=0", "loss.ntxent_weight=0"])
    train_variant(cfg, store_path, tmp_path / "triplets.csv", tmp_path / "run", manifest_path, teacher_store[0])
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert {"distill_loss", "relational_loss"} <= set(history.columns)
    first, last = history.iloc[0], history.iloc[-1]
    assert last["distill_loss"] < 0.9 * first["distill_loss"]
    assert last["relational_loss"] < first["relational_loss"]


def test_the_teacher_as_a_whole_song_embedder_is_the_song_mean_of_z_scored_patches(teacher_store):
    path, rows, *_ = teacher_store
    ids = rows["track_id"].tolist()
    vectors = teacher_song_vectors(path, ids + ["not-a-track"], ids[:4])
    assert list(vectors.index) == ids and vectors.shape == (len(ids), 306)
    with TeacherTargets(path) as store:
        train = np.concatenate([store.patches(t)[1] for t in ids[:4]])
        _, first = store.patches(ids[0])
    std = np.maximum(train.std(axis=0), 1e-3)
    np.testing.assert_allclose(vectors.iloc[0], ((first - train.mean(axis=0)) / std).mean(axis=0), rtol=1e-4, atol=1e-4)


# --- Teacher pretraining of SSM-Net's encoder (songfeel.segmentation.pretrain) ----------------------

@pytest.fixture(scope="module")
def teacher_songs(teacher_store):
    """The 8 demo songs decoded at SSM-Net's rate, paired with their real teacher targets."""
    from conftest import structure_feature_config

    from songfeel.audio import load_audio
    from songfeel.segmentation.pretrain import TeacherSongs

    path, rows, *_ = teacher_store
    features = structure_feature_config()
    audio = {p: load_audio(p, features.sample_rate) for p in rows["path"]}
    audio["/nowhere/no-targets.ogg"] = next(iter(audio.values()))
    return TeacherSongs(audio, path), features


def test_teacher_songs_pair_each_patch_with_the_teacher_patch_at_its_time(teacher_songs, teacher_store):
    from songfeel.segmentation.features import patch_times

    songs, features = teacher_songs
    _, rows, *_ = teacher_store
    assert songs.missing == ["/nowhere/no-targets.ogg"] and len(songs.songs) == len(rows) and songs.dim == 306
    stacked = np.concatenate([targets for _, targets in songs.songs.values()])
    np.testing.assert_allclose(stacked.mean(axis=0), 0, atol=1e-3)  # z-scored over the training songs
    song = rows["path"].iloc[0]
    patches, targets = songs.crop(song, features, 12.0, np.random.default_rng(0))
    assert patches.shape == (len(targets), features.patch_steps, features.n_mels) and targets.shape[1] == 306
    assert len(targets) == len(patch_times(len(patches), features))
    # Every row is one of the song's own z-scored teacher patches.
    _, own = songs.songs[song]
    assert all(np.any(np.all(own == row, axis=1)) for row in targets)


@pytest.mark.parametrize("loss", ["regression", "similarity"])
def test_teacher_pretraining_lowers_the_teacher_loss_and_leaves_the_novelty_alone(teacher_songs, loss):
    from conftest import ssmnet_config

    from songfeel.segmentation.pretrain import (
        TeacherPretrainConfig,
        pretrain_with_teacher,
    )
    from songfeel.segmentation.ssmnet import SSMNet

    songs, features = teacher_songs
    torch.manual_seed(0)
    model = SSMNet(ssmnet_config(channels=[4, 8], embedding_dim=16, n_layers=1, n_heads=2, ff_dim=16))
    kernels = model.kernels.detach().clone()
    conv = model.conv[0].weight.detach().clone()
    cfg = TeacherPretrainConfig(epochs=8, loss=loss, crop_seconds=20.0, outputs=(), learning_rate=3e-3,
                                weight_decay=0.0, grad_clip=1.0, seed=0)
    history = pretrain_with_teacher(model, songs, features, cfg, progress=False)
    assert len(history) == 8 and (history["skipped"] == 0).all()
    first, last = history["teacher_loss"].iloc[:2].mean(), history["teacher_loss"].iloc[-2:].mean()
    if loss == "regression":
        # Starts near 1 (z-scored targets, a fresh head): 1 - loss is the share of the teacher's variance that
        # the 16-d embedding explains after 8 epochs of these 8 songs (64 steps).
        assert last < first - 0.02
    else:
        # The mean squared gap between the two SSMs: 0.030 -> 0.018 in 8 epochs.
        assert last < 0.8 * first
    assert torch.equal(model.kernels, kernels) and not torch.equal(model.conv[0].weight, conv)


def test_teacher_frames_take_the_patch_whose_centre_is_nearest():
    from songfeel.segmentation.pretrain import teacher_frames

    starts = np.array([0.0, 1.5, 3.0])  # centres 1.5, 3.0, 4.5
    targets = np.arange(3)[:, None] * np.ones((1, 2))
    rows = teacher_frames(starts, targets, np.array([0.0, 2.2, 2.3, 10.0]))
    np.testing.assert_array_equal(rows[:, 0], [0, 0, 1, 2])
    with pytest.raises(ValueError, match="teacher patch starts"):
        teacher_frames(starts[:0], targets[:0], np.array([1.0]))
