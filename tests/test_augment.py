"""Augmentation of log-mel crops, on the log-mel of a real demo track."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.augment import (
    LogMelAugment,
    apply_gain,
    band_centres,
    lowpass,
    pitch_shift,
    spectral_tilt,
    time_stretch,
)
from songfeel.features import log_mel

REPO = Path(__file__).resolve().parents[1]
CROP = 1300  # frames: ~30 s at 43 frames per second


def augment_conf(name: str = "default", **overrides) -> dict:
    """conf/augment/<name>.yaml as a dict, with ``overrides``."""
    return {**OmegaConf.to_container(OmegaConf.load(REPO / f"conf/augment/{name}.yaml")), **overrides}


@pytest.fixture(scope="module")
def crop(demo_paths, feature_config) -> np.ndarray:
    """(CROP, n_mels) float32 dB: the log-mel of a real demo track."""
    frames = log_mel(load_audio(demo_paths[0]), feature_config)
    assert frames.shape[0] >= CROP
    return np.ascontiguousarray(frames[:CROP])


def _band_centroid(frames: np.ndarray) -> float:
    """Energy-weighted mean band index over the whole crop."""
    power = 10.0 ** (frames.astype(np.float64) / 10.0)
    bands = np.arange(frames.shape[1])
    return float((power * bands).sum() / power.sum())


def test_identity_config_returns_the_input_exactly(crop, feature_config):
    augment = LogMelAugment.from_mapping(OmegaConf.load(REPO / "conf/augment/none.yaml"), feature_config)
    assert augment.is_identity
    before = crop.copy()
    out = augment(crop, np.random.default_rng(0))
    assert out.dtype == np.float32 and out is not crop
    np.testing.assert_array_equal(out, crop)
    np.testing.assert_array_equal(crop, before)  # the input is never modified


def test_default_yaml_builds_the_documented_defaults(feature_config):
    augment = LogMelAugment.from_mapping(OmegaConf.load(REPO / "conf/augment/default.yaml"), feature_config)
    assert augment == LogMelAugment(gain_db=6.0, pitch_semitones=1.0, tempo_range=(0.9, 1.1), lowpass_probability=0.5,
                                    lowpass_hz=(4000.0, 11025.0), lowpass_db_per_octave=24.0, tilt_db=3.0,
                                    features=feature_config)
    assert augment.tempo_range == (0.9, 1.1) and augment.lowpass_hz == (4000.0, 11025.0)
    assert not augment.is_identity
    hash(augment)  # frozen and hashable, even built from OmegaConf lists


def test_gain_adds_exactly_the_constant(crop, feature_config):
    np.testing.assert_array_equal(apply_gain(crop, 2.5), crop + np.float32(2.5))
    augment = LogMelAugment.from_mapping(augment_conf("none", gain_db=6.0), feature_config)
    assert (augment.pitch_semitones, augment.tempo_range, augment.lowpass_probability, augment.tilt_db) == (
        0, (1, 1), 0, 0)
    gain = np.random.default_rng(7).uniform(-6.0, 6.0)  # the only draw of this config
    out = augment(crop, np.random.default_rng(7))
    np.testing.assert_array_equal(out, crop + np.float32(gain))


@pytest.mark.parametrize("rate", [0.9, 0.95, 1.03, 1.1, 2.0])
def test_time_stretch_frame_count_and_level(crop, rate):
    out = time_stretch(crop, rate)
    assert out.shape == (round(CROP / rate), crop.shape[1]) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], crop[0])
    np.testing.assert_allclose(out[-1], crop[-1], atol=1e-4)
    # Linear interpolation keeps the level: per-band means within a fraction of a dB.
    assert np.abs(out.mean(axis=0) - crop.mean(axis=0)).max() < 0.5
    assert abs(out.mean() - crop.mean()) < 0.1


def test_time_stretch_edge_cases(crop):
    np.testing.assert_array_equal(time_stretch(crop, 1.0), crop)
    assert time_stretch(crop[:3], 100.0).shape == (1, crop.shape[1])
    np.testing.assert_array_equal(time_stretch(crop[:1], 0.5), np.repeat(crop[:1], 2, axis=0))
    with pytest.raises(ValueError, match="rate"):
        time_stretch(crop, 0.0)


def test_tempo_augmentation_changes_length_within_range(crop, feature_config):
    augment = LogMelAugment.from_mapping(augment_conf("none", tempo_range=[0.9, 1.1]), feature_config)
    assert (augment.gain_db, augment.pitch_semitones, augment.lowpass_probability, augment.tilt_db) == (0, 0, 0, 0)
    lengths = {augment(crop, np.random.default_rng(seed)).shape[0] for seed in range(20)}
    assert len(lengths) > 5
    assert min(lengths) >= round(CROP / 1.1) and max(lengths) <= round(CROP / 0.9)


def test_pitch_shift_moves_the_spectrum_by_an_octave(crop, feature_config):
    centroid = _band_centroid(crop)
    up, down = pitch_shift(crop, 12.0, feature_config), pitch_shift(crop, -12.0, feature_config)
    assert _band_centroid(up) > centroid + 3 and _band_centroid(down) < centroid - 3
    # Exactly linear interpolation on the band-centre axis, edges held.
    centres = band_centres(feature_config)
    for frame in (0, 600, CROP - 1):
        expected = np.interp(centres / 2.0, centres, crop[frame].astype(np.float64))
        np.testing.assert_allclose(up[frame], expected, atol=1e-3)
    # A band an octave up now holds what the band an octave down held (mel bands are ~linear above 1 kHz).
    band_2k, band_4k = np.argmin(np.abs(centres - 2000)), np.argmin(np.abs(centres - 4000))
    assert abs(up[:, band_4k].mean() - crop[:, band_2k].mean()) < 2.0
    np.testing.assert_array_equal(pitch_shift(crop, 0.0, feature_config), crop)
    assert up.dtype == np.float32 and np.isfinite(up).all() and up.min() >= crop.min()


def test_lowpass_attenuates_above_the_cutoff_by_the_slope_down_to_the_floor(crop, feature_config):
    centres = band_centres(feature_config)
    floor = feature_config.silence_db
    # A quiet track (floored like log_mel), so that the attenuation reaches the floor.
    quiet = np.maximum(crop - np.float32(40.0), np.float32(floor))
    cutoff, slope = 3000.0, 24.0
    out = lowpass(quiet, cutoff, slope, feature_config)
    below = centres <= cutoff
    np.testing.assert_array_equal(out[:, below], quiet[:, below])
    attenuation = slope * np.log2(centres[~below] / cutoff)
    expected = np.maximum(quiet[:, ~below] - attenuation, floor)
    np.testing.assert_allclose(out[:, ~below], expected, atol=1e-3)
    assert out.min() >= floor and (out == np.float32(floor)).sum() > 0  # clamped, never under
    # The top band (10.5 kHz, 1.8 octaves above 3 kHz) loses 43 dB where it is 43 dB above the floor.
    loud = crop + np.float32(20.0)
    lost = loud[:, -1] - lowpass(loud, cutoff, slope, feature_config)[:, -1]
    assert lost.max() == pytest.approx(slope * np.log2(centres[-1] / cutoff), abs=1e-3)
    # Values already under the floor (e.g. after a negative gain) are left alone.
    under = np.full((4, crop.shape[1]), floor - 5.0, dtype=np.float32)
    np.testing.assert_array_equal(lowpass(under, cutoff, slope, feature_config), under)
    # A cutoff above every band centre is the identity.
    np.testing.assert_array_equal(lowpass(crop, 11025.0, slope, feature_config), crop)


def test_spectral_tilt(crop):
    out = spectral_tilt(crop, 3.0)
    delta = (out - crop).astype(np.float64)
    assert delta[:, -1].mean() - delta[:, 0].mean() == pytest.approx(3.0, abs=1e-4)
    assert abs(delta.mean()) < 1e-4  # mean level across bands unchanged
    assert np.all(np.diff(delta[0]) > 0)  # linear and increasing across bands


def test_full_augmentation_is_finite_float32_and_reproducible(crop, feature_config):
    augment = LogMelAugment.from_mapping(
        {"gain_db": 6, "pitch_semitones": 1, "tempo_range": [0.9, 1.1], "lowpass_probability": 0.5,
         "lowpass_hz": [4000, 11025], "lowpass_db_per_octave": 24, "tilt_db": 3},
        feature_config,
    )
    outs = [augment(crop, np.random.default_rng(seed)) for seed in range(8)]
    for out in outs:
        assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == crop.shape[1]
        assert np.isfinite(out).all()
        assert abs(out.mean() - crop.mean()) < 6.0 + 3.0  # the gain plus a little
    np.testing.assert_array_equal(augment(crop, np.random.default_rng(3)), outs[3])
    assert not np.array_equal(outs[0], outs[1])


def test_augmentation_is_fast(crop, feature_config):
    augment = LogMelAugment.from_mapping(augment_conf(lowpass_probability=1.0), feature_config)  # every step
    rng = np.random.default_rng(0)
    augment(crop, rng)
    best = min(_timed(augment, crop, rng) for _ in range(5))
    assert best < 3e-3, f"{best * 1e3:.2f} ms per (1300, 64) crop"  # ~0.3 ms on a laptop core


def _timed(augment, crop, rng, n: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(n):
        augment(crop, rng)
    return (time.perf_counter() - start) / n


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"gain_db": -1}, "gain_db"),
        ({"pitch_semitones": float("nan")}, "pitch_semitones"),
        ({"tilt_db": "loud"}, "tilt_db"),
        ({"lowpass_probability": 1.5}, "lowpass_probability"),
        ({"lowpass_db_per_octave": -24}, "lowpass_db_per_octave"),
        ({"tempo_range": [1.1, 0.9]}, "tempo_range"),
        ({"tempo_range": [1.0]}, "tempo_range"),
        ({"lowpass_hz": [0, 8000]}, "lowpass_hz"),
        ({"gain_dB": 6}, "gain_dB"),
    ],
)
def test_invalid_settings_name_the_field(settings, field, feature_config):
    with pytest.raises(ValueError, match=field):
        LogMelAugment.from_mapping(augment_conf(**settings), feature_config)


def test_missing_settings_are_named(feature_config):
    settings = augment_conf()
    del settings["tilt_db"], settings["gain_db"]
    with pytest.raises(ValueError, match=r"\['gain_db', 'tilt_db'\] missing"):
        LogMelAugment.from_mapping(settings, feature_config)


def test_frames_of_the_wrong_shape_are_rejected(crop, feature_config):
    augment = LogMelAugment.from_mapping(augment_conf(), feature_config)
    with pytest.raises(ValueError, match="mel bands"):
        augment(crop[:, :32], np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        augment(crop[0], np.random.default_rng(0))
