import librosa
import numpy as np
import pytest
from conftest import logmel_conf, logmel_config

from songfeel.audio import load_audio
from songfeel.features import FeatureConfig, log_mel, mel_filterbank, mel_power, mfcc


def test_log_mel_shape_and_frame_count(demo_paths, feature_config):
    samples = load_audio(demo_paths[1])
    logmel = log_mel(samples, feature_config)
    assert logmel.shape == (feature_config.n_frames(samples.shape[0]), feature_config.n_mels)
    assert logmel.dtype == np.float32
    assert np.isfinite(logmel).all()
    assert feature_config.silence_db <= logmel.min() < logmel.max() < 60


def test_silence_is_the_floor_in_db(feature_config):
    cfg = feature_config
    logmel = log_mel(np.zeros(cfg.sample_rate, np.float32), cfg)
    np.testing.assert_allclose(logmel, cfg.silence_db)


def test_sine_energy_lands_in_the_right_mel_band(feature_config):
    cfg = feature_config
    t = np.arange(cfg.sample_rate) / cfg.sample_rate
    logmel = log_mel((0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32), cfg)
    loudest = int(np.argmax(logmel.mean(axis=0)))
    weights = mel_filterbank(cfg)
    freqs = np.linspace(0, cfg.sample_rate / 2, weights.shape[1])
    centre = freqs[np.argmax(weights[loudest])]
    assert abs(centre - 1000.0) < 120.0


def test_mfcc_equals_librosa(demo_paths, feature_config):
    logmel = log_mel(load_audio(demo_paths[2])[: 5 * 22050], feature_config)
    coeffs = mfcc(logmel, feature_config)
    assert coeffs.shape == (logmel.shape[0], feature_config.n_mfcc)
    expected = librosa.feature.mfcc(S=logmel.T, n_mfcc=feature_config.n_mfcc).T
    np.testing.assert_allclose(coeffs, expected, atol=1e-3)


def test_input_shorter_than_one_stft_window_raises(feature_config):
    cfg = feature_config
    with pytest.raises(ValueError, match="shorter than one STFT window"):
        log_mel(np.zeros(cfg.n_fft - 1, np.float32), cfg)


def test_frame_conversions():
    cfg = logmel_config(sample_rate=22050, hop_length=512, n_fft=1024)
    assert cfg.n_frames(1023) == 0 and cfg.n_frames(1024) == 1 and cfg.n_frames(1024 + 512) == 2
    assert cfg.seconds_to_frames(1.0) == 43


def test_log_mel_equals_librosa_on_real_audio(demo_paths, feature_config):
    samples = load_audio(demo_paths[5])
    cfg = feature_config
    power = librosa.feature.melspectrogram(y=samples, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           window="hann", center=False, power=2.0, n_mels=cfg.n_mels)
    # The shared mel analysis is librosa's, with the config's parameters.
    shared = mel_power(samples, cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax,
                       center=False)
    np.testing.assert_array_equal(shared, power)
    expected = librosa.power_to_db(shared, ref=1.0, amin=cfg.amin, top_db=None).T
    actual = log_mel(samples, cfg, block_frames=100)  # several blocks
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-2)
    assert np.abs(actual - expected).mean() < 1e-4


def test_the_config_comes_from_conf_and_names_what_is_missing():
    conf = logmel_conf()
    cfg = FeatureConfig.from_mapping(conf)
    assert cfg.to_dict() == {key: conf[key] for key in cfg.to_dict()}
    with pytest.raises(ValueError, match="FeatureConfig needs n_fft, amin"):
        FeatureConfig.from_mapping({key: value for key, value in cfg.to_dict().items() if key not in ("n_fft", "amin")})
