import dataclasses

import librosa
import numpy as np
import pytest
from conftest import PAPER_SSMNET, structure_feature_config

from songfeel.audio import load_audio
from songfeel.segmentation.features import (
    StructureFeatureConfig,
    patch_times,
    patches,
    structure_features,
)

#: conf's front end with the paper's 40-step patches, which these tests' numbers are written for.
CFG = structure_feature_config(**PAPER_SSMNET["features"])


@pytest.fixture(scope="module")
def track(demo_paths) -> np.ndarray:
    return load_audio(demo_paths[0], CFG.sample_rate)


def test_config_units_match_the_paper():
    # arXiv 2309.02243: ~0.1 s steps, patches of 40 steps (~4 s) every 5 steps (~0.5 s).
    assert CFG.frames_per_step == 4
    assert CFG.step_duration_seconds == pytest.approx(4 * 512 / 22050)
    assert CFG.patch_seconds == pytest.approx(3.715, abs=1e-3)
    assert CFG.patch_hop_seconds == pytest.approx(0.464, abs=1e-3)
    assert dataclasses.replace(CFG, hop_length=256).frames_per_step == 8


def test_the_config_comes_from_conf_and_names_what_is_missing():
    conf = structure_feature_config()
    assert conf.patch_steps == 20 and conf.n_mels == 80 and conf.fmax == 8000.0  # conf/segmentation/default.yaml
    values = conf.to_dict()
    del values["patch_steps"], values["log_gain"]
    with pytest.raises(ValueError, match="StructureFeatureConfig needs log_gain, patch_steps"):
        StructureFeatureConfig.from_mapping(values)


def test_features_equal_the_former_inline_mel_analysis_on_a_real_track(track):
    """The shared mel analysis (songfeel.features.mel_power) changed no number: the features equal, bit for bit,
    the librosa call structure_features made itself before, for conf's front end and the paper's."""
    for cfg in (structure_feature_config(), CFG):
        mel = librosa.feature.melspectrogram(y=track, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                             n_mels=cfg.n_mels, fmax=cfg.fmax, power=2.0, center=True
                                             ).T.astype(np.float64)
        compressed = np.log1p(cfg.log_gain * mel)
        zscored = (compressed - compressed.mean(axis=0)) / (compressed.std(axis=0) + 1e-8)
        n_steps = cfg.n_steps(track.shape[0])
        frames = zscored[: n_steps * cfg.frames_per_step]
        former = frames.reshape(n_steps, cfg.frames_per_step, cfg.n_mels).mean(axis=1).astype(np.float32)
        np.testing.assert_array_equal(structure_features(track, cfg), former)


def test_features_of_a_real_track(track):
    features = structure_features(track, CFG)
    n_frames = 1 + track.shape[0] // CFG.hop_length
    assert features.shape == (n_frames // 4, 80) == (CFG.n_steps(track.shape[0]), CFG.n_mels)
    assert features.shape[0] * CFG.step_duration_seconds == pytest.approx(track.shape[0] / CFG.sample_rate, abs=0.1)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    # z-scored per band before averaging 4 frames: means near 0, spreads at most 1 (and not collapsed).
    assert np.abs(features.mean(axis=0)).max() < 0.05
    assert 0.3 < features.std(axis=0).min() and features.std(axis=0).max() <= 1.0 + 1e-4


def test_first_step_averages_the_compressed_zscored_mel(track):
    mel = librosa.feature.melspectrogram(y=track, sr=22050, n_fft=2048, hop_length=512, n_mels=80, fmax=8000.0)
    compressed = np.log1p(100.0 * mel.astype(np.float64))
    zscored = (compressed - compressed.mean(axis=1, keepdims=True)) / compressed.std(axis=1, keepdims=True)
    features = structure_features(track, CFG)
    np.testing.assert_allclose(features[0], zscored[:, 0:4].mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(features[-1], zscored[:, 4 * len(features) - 4 : 4 * len(features)].mean(axis=1), atol=1e-4)


def test_patches_are_windows_of_the_steps(track):
    features = structure_features(track, CFG)
    cut = patches(features, CFG)
    n_patches = 1 + (features.shape[0] - 40) // 5
    assert cut.shape == (n_patches, 40, 80) == (CFG.n_patches(features.shape[0]), CFG.patch_steps, CFG.n_mels)
    for p in (0, 1, n_patches - 1):
        np.testing.assert_array_equal(cut[p], features[5 * p : 5 * p + 40])


def test_patch_times_are_the_centres_of_the_patches_in_seconds(track):
    n_patches = CFG.n_patches(CFG.n_steps(track.shape[0]))
    times = patch_times(n_patches, CFG)
    assert times.shape == (n_patches,)
    np.testing.assert_allclose(np.diff(times), CFG.patch_hop_seconds)
    for p in (0, n_patches - 1):
        first_frame, last_frame = 20 * p, 20 * p + 40 * 4 - 1
        frame_centres = librosa.frames_to_time([first_frame, last_frame], sr=22050, hop_length=512)
        assert times[p] == pytest.approx(frame_centres.mean())
    duration = track.shape[0] / CFG.sample_rate
    assert times[0] == pytest.approx(CFG.patch_seconds / 2, abs=0.02)
    assert times[-1] + CFG.patch_seconds / 2 <= duration + CFG.frame_seconds


def test_patches_separate_the_tracks_of_a_medley(demo_paths):
    # A B medley of two real tracks: patches lying wholly in one track resemble each other more than the other's.
    sr, seconds = CFG.sample_rate, 10
    a, b = load_audio(demo_paths[0], sr), load_audio(demo_paths[8], sr)
    medley = np.concatenate([a[2 * sr : (2 + seconds) * sr], b[2 * sr : (2 + seconds) * sr]])
    cut = patches(structure_features(medley, CFG), CFG)
    times = patch_times(len(cut), CFG)
    in_a = times + CFG.patch_seconds / 2 <= seconds
    in_b = times - CFG.patch_seconds / 2 >= seconds
    flat = cut.reshape(len(cut), -1)
    flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    cosine = flat @ flat.T
    within = np.concatenate([cosine[np.ix_(in_a, in_a)].ravel(), cosine[np.ix_(in_b, in_b)].ravel()]).mean()
    across = cosine[np.ix_(in_a, in_b)].mean()
    assert in_a.sum() >= 10 and in_b.sum() >= 10
    assert within > across + 0.15


def test_silence_raises():
    with pytest.raises(ValueError, match="silent"):
        structure_features(np.zeros(10 * CFG.sample_rate, np.float32), CFG)


def test_audio_shorter_than_one_patch_raises():
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * CFG.sample_rate).astype(np.float32)
    with pytest.raises(ValueError, match="shorter than one patch"):
        structure_features(noise, CFG)
    with pytest.raises(ValueError, match="shorter than one patch"):
        patches(np.zeros((39, 80), np.float32), CFG)
    with pytest.raises(ValueError, match="mono"):
        structure_features(np.zeros((2, 10 * CFG.sample_rate), np.float32), CFG)


def test_just_one_patch():
    n_samples = next(n for n in range(0, 5 * CFG.sample_rate, CFG.hop_length) if CFG.n_steps(n) == 40)
    noise = np.random.default_rng(1).normal(0, 0.1, n_samples).astype(np.float32)
    assert patches(structure_features(noise, CFG), CFG).shape == (1, 40, 80)
    assert patch_times(0, CFG).shape == (0,)
