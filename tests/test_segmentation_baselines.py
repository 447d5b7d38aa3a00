"""Checkerboard kernel, Foote novelty and Laplacian segmentation, on ideal SSMs and real audio."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from conftest import foote_settings, segmentation_conf

from songfeel.audio import load_audio
from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.baselines import (
    FooteFeatureConfig,
    checkerboard_kernel,
    cosine_ssm,
    foote_segmentation,
    frame_features,
    laplacian_segmentation,
    novelty_curve,
)
from songfeel.segmentation.config import foote_feature_config, section
from songfeel.segmentation.groundtruth import ssm
from songfeel.segmentation.peaks import pick_peaks

#: The medleys' sample rate (conf/segmentation/default.yaml), at which stage 05 runs the baselines.
SAMPLE_RATE = int(segmentation_conf().medleys.sample_rate)
#: Foote's frame features as conf sets them.
FRAMES = foote_feature_config(segmentation_conf())
#: The Foote kernel's taper as conf sets it.
SIGMA = float(segmentation_conf().eval.foote.kernel_sigma)


def test_checkerboard_kernel_has_signed_quadrants_and_unit_mass():
    kernel = checkerboard_kernel(8, sigma=0.5)
    assert kernel.shape == (8, 8)
    np.testing.assert_allclose(kernel, kernel.T)
    assert kernel.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.abs(kernel).sum() == pytest.approx(1.0)
    assert (kernel[:4, :4] > 0).all() and (kernel[4:, 4:] > 0).all()
    assert (kernel[:4, 4:] < 0).all() and (kernel[4:, :4] < 0).all()
    np.testing.assert_allclose(kernel[::-1], -kernel)  # swapping past and future flips the sign
    # The taper is largest next to the centre and decays outwards.
    assert kernel[3, 3] == kernel.max() and kernel[0, 0] < kernel[2, 2] < kernel[3, 3]


def test_checkerboard_kernel_odd_size_and_flat_limit():
    odd = checkerboard_kernel(5, SIGMA)
    np.testing.assert_array_equal(odd[2], 0)
    np.testing.assert_array_equal(odd[:, 2], 0)
    flat = checkerboard_kernel(4, sigma=1e6)
    np.testing.assert_allclose(np.abs(flat), 1 / 16)
    with pytest.raises(ValueError):
        checkerboard_kernel(1, SIGMA)
    with pytest.raises(ValueError):
        checkerboard_kernel(4, sigma=0.0)


def test_novelty_of_an_ideal_block_ssm_peaks_at_the_boundaries():
    times = np.arange(60) * 0.5  # frame start times, seconds
    reference = Segmentation.from_boundaries([10.0, 20.0], ["A", "B", "C"], 30.0)
    novelty = novelty_curve(ssm(reference, times), checkerboard_kernel(8, SIGMA))
    assert novelty.shape == times.shape
    np.testing.assert_allclose(novelty[20], 0.5)  # all of the positive half matches, none of the negative
    np.testing.assert_allclose(pick_peaks(novelty, times, 1.0, 12.0, 3.0, refine=False), [10.0, 20.0])


def test_cosine_ssm_is_in_unit_range_with_ones_on_the_diagonal():
    features = np.random.default_rng(0).normal(size=(12, 5))
    matrix = cosine_ssm(features)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix.min() >= 0.0 and matrix.max() <= 1.0 + 1e-12
    np.testing.assert_allclose(cosine_ssm(np.vstack([features[0], -features[0]]))[0, 1], 0.0, atol=1e-12)


@pytest.fixture(scope="module")
def spliced(demo_paths):
    """15 s of a calm acoustic song then 15 s of an energetic electronic one: one boundary at 15 s."""
    calm = next(p for p in demo_paths if "calm_acoustic" in p)
    energetic = next(p for p in demo_paths if "energetic_electronic" in p)
    first = load_audio(calm, SAMPLE_RATE)[5 * SAMPLE_RATE : 20 * SAMPLE_RATE]
    second = load_audio(energetic, SAMPLE_RATE)[5 * SAMPLE_RATE : 20 * SAMPLE_RATE]
    return np.concatenate([first, second])


def test_frame_features_are_standardised_blocks(spliced):
    features, times = frame_features(spliced, SAMPLE_RATE, "logmel", 0.5, FRAMES)
    assert features.shape[1] == 64 and features.shape[0] == times.shape[0]
    assert times[1] == pytest.approx(22 * 512 / SAMPLE_RATE)  # blocks of round(0.5 s / 512 samples) frames
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="feature"):
        frame_features(spliced, SAMPLE_RATE, "chroma", 0.5, FRAMES)


def test_frame_features_equal_the_former_inline_log_mel_on_real_audio(spliced):
    """Foote's log-mel now comes from songfeel.features.mel_power with conf's eval.foote.frames: the same
    numbers, bit for bit, as the librosa calls frame_features made itself before (64 bands, hop 512)."""
    assert FRAMES == FooteFeatureConfig(n_fft=2048, hop_length=512, n_mels=64, fmin=0.0, fmax=None, amin=1e-10,
                                        top_db=80.0, n_mfcc=20)
    log_mel = librosa.power_to_db(librosa.feature.melspectrogram(y=spliced, sr=SAMPLE_RATE, hop_length=512,
                                                                 n_mels=64), ref=np.max)
    for feature, former in (("logmel", log_mel), ("mfcc", librosa.feature.mfcc(S=log_mel, n_mfcc=21)[1:])):
        block = int(round(0.5 * SAMPLE_RATE / 512))
        starts = np.arange(0, former.shape[1], block)
        pooled = (np.add.reduceat(former, starts, axis=1) / np.diff(np.append(starts, former.shape[1]))).T
        pooled = (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-8)
        features, times = frame_features(spliced, SAMPLE_RATE, feature, 0.5, FRAMES)
        np.testing.assert_array_equal(features, pooled)
        np.testing.assert_array_equal(times, starts * 512 / SAMPLE_RATE)


def test_foote_frames_come_from_conf_and_name_what_is_missing():
    frames = dict(section(segmentation_conf(), "eval")["foote"]["frames"])
    del frames["top_db"]
    with pytest.raises(ValueError, match="FooteFeatureConfig needs top_db"):
        FooteFeatureConfig.from_mapping(frames)
    with pytest.raises(ValueError, match="no frames section"):
        foote_feature_config(segmentation_conf(eval={"foote": {"frames": None}}))


def test_foote_finds_the_splice_between_two_real_songs(spliced):
    estimate = foote_segmentation(spliced, SAMPLE_RATE, feature="mfcc", **foote_settings(kernel_seconds=8.0))
    assert estimate.duration == pytest.approx(30.0)
    assert np.min(np.abs(estimate.boundaries() - 15.0)) < 1.0
    assert len(estimate.labels) == estimate.n_segments


def test_laplacian_segmentation_finds_the_splice_between_two_real_songs(spliced):
    estimate = laplacian_segmentation(spliced, SAMPLE_RATE, n_segment_types=3, seed=0)
    assert estimate.source == "laplacian" and estimate.duration == pytest.approx(30.0)
    assert estimate.intervals[0, 0] == 0.0 and estimate.intervals[-1, 1] == pytest.approx(30.0)
    assert np.min(np.abs(estimate.boundaries() - 15.0)) < 3.0
    # The two songs never share a label: the label at 7.5 s differs from every label after 16 s.
    first = estimate.labels[int(np.searchsorted(estimate.intervals[:, 0], 7.5, side="right")) - 1]
    after = {label for (start, end), label in zip(estimate.intervals, estimate.labels, strict=True) if end > 16.0}
    assert first not in after
