"""Peak picking on synthetic novelty curves with known peaks, local refinement on a real cut, and labelling."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import peak_conf, structure_feature_config

from songfeel.audio import load_audio
from songfeel.segmentation.features import (
    step_start_times,
    structure_features,
)
from songfeel.segmentation.peaks import (
    PEAK_KEYS,
    detect_boundaries,
    label_segments,
    letters_in_order,
    peak_settings,
    pick_peaks,
    refine_boundaries,
)

TIMES = np.arange(0.0, 60.0, 0.5)


def bumps(centres, heights, width=1.0):
    return sum(h * np.exp(-0.5 * ((TIMES - c) / width) ** 2) for c, h in zip(centres, heights, strict=True))


def test_pick_peaks_finds_the_known_peaks_over_a_ripple():
    novelty = bumps([10.0, 25.0, 40.0], [1.0, 0.8, 0.6]) + 0.03 * np.sin(TIMES * 3.0) + 0.05
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 2.0, 12.0, 3.0, False), [10.0, 25.0, 40.0])
    assert len(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0, False)) > 3  # the ripple passes a low threshold


def test_pick_peaks_keeps_the_higher_of_two_close_peaks():
    novelty = bumps([20.0, 22.0, 45.0], [0.5, 0.9, 0.7], width=0.5)
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0, False), [22.0, 45.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 1.0, False), [20.0, 22.0, 45.0])


def test_song_ends_are_not_boundaries():
    novelty = bumps([0.0, 1.5, 30.0, 58.5], [2.0, 2.0, 1.0, 2.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0, False), [30.0])


def test_threshold_ratio_rejects_peaks_near_the_local_mean():
    novelty = 1.0 + bumps([15.0, 40.0], [1.0, 0.05])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.1, 12.0, 3.0, False), [15.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0, False), [15.0, 40.0])


def test_flat_top_counts_once_and_flat_curve_has_no_peak():
    novelty = np.zeros_like(TIMES)
    novelty[60:63] = 1.0  # 30.0, 30.5, 31.0 s
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 0.1, False), [30.5])  # its middle frame
    assert len(pick_peaks(np.ones_like(TIMES), TIMES, 1.2, 12.0, 3.0, False)) == 0


def test_label_segments_groups_repeated_segments():
    times = np.arange(0.0, 30.0, 1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    features = np.array([a if (t < 10 or t >= 20) else b for t in times]) + 0.01 * rng.normal(size=(30, 8))
    assert label_segments(features, times, np.array([10.0, 20.0]), peak_conf()["label_distance"]) == ["A", "B", "A"]
    assert letters_in_order([7, 3, 7, 9]) == ["A", "B", "A", "C"]


def test_refined_peaks_find_the_vertex_between_frames():
    """Sampled Gaussian bumps centred between frames: the parabola's vertex lands close to the true centre."""
    times = np.arange(0.0, 60.0, 0.5)
    centres = [10.2, 25.37, 40.0, 51.1]
    novelty = sum(np.exp(-0.5 * ((times - c) / 1.0) ** 2) for c in centres)
    coarse = pick_peaks(novelty, times, 1.0, 12.0, 3.0, False)
    fine = pick_peaks(novelty, times, 1.0, 12.0, 3.0, refine=True)
    np.testing.assert_allclose(coarse, [10.0, 25.5, 40.0, 51.0])  # the frame grid
    np.testing.assert_allclose(fine, centres, atol=0.03)
    assert np.abs(fine - centres).max() < np.abs(coarse - centres).max()
    flat = np.zeros_like(times)
    flat[40:43] = [0.0, 1.0, 0.0]
    np.testing.assert_allclose(pick_peaks(flat, times, 1.0, 12.0, 3.0, refine=True), [times[41]])


# --- local refinement on real audio ------------------------------------------------------------


@pytest.fixture(scope="module")
def hard_cut(demo_manifest):
    """Two real demo songs joined by a sample-exact cut at 12.0 s, as SSM-Net's fine log-mel steps."""
    config = structure_feature_config()
    rate = config.sample_rate
    first, second = (load_audio(path, rate) for path in demo_manifest["path"].iloc[[0, 5]])
    audio = np.concatenate([first[5 * rate: 17 * rate], second[5 * rate: 17 * rate]])
    steps = structure_features(audio, config)
    return steps, step_start_times(len(steps), config), config.step_duration_seconds


@pytest.mark.parametrize("coarse", [11.2, 12.0, 12.45, 12.9])
def test_refine_boundaries_moves_a_loose_boundary_onto_the_cut(hard_cut, coarse):
    steps, starts, step = hard_cut
    refined = refine_boundaries(np.array([coarse]), steps, starts, radius_seconds=1.0, window_seconds=1.0)
    assert refined.shape == (1,)
    assert abs(refined[0] - 12.0) <= step  # within one ~93 ms step of the true cut


def test_refine_boundaries_stays_within_its_radius_and_near_the_ends(hard_cut):
    steps, starts, _ = hard_cut
    # 3 s from the cut with a 0.5 s radius: the cut is out of reach, the boundary moves at most 0.5 s.
    refined = refine_boundaries(np.array([9.0]), steps, starts, radius_seconds=0.5, window_seconds=1.0)
    assert abs(refined[0] - 9.0) <= 0.5 + 1e-9
    # No full 1 s window before 0.3 s: the boundary stays put. Radius 0 changes nothing.
    np.testing.assert_allclose(refine_boundaries(np.array([0.3]), steps, starts, 0.2, 1.0), [0.3])
    np.testing.assert_allclose(refine_boundaries(np.array([11.2, 5.0]), steps, starts, 0.0, 1.0), [5.0, 11.2])
    # Two loose estimates of the same cut merge into one boundary.
    np.testing.assert_allclose(refine_boundaries(np.array([11.4, 12.6]), steps, starts, 1.0, 1.0),
                               refine_boundaries(np.array([11.4]), steps, starts, 1.0, 1.0))
    with pytest.raises(ValueError, match="must be >= 0"):
        refine_boundaries(np.array([5.0]), steps, starts, -1.0, 1.0)
    with pytest.raises(ValueError, match="n_frames"):
        refine_boundaries(np.array([5.0]), steps, starts[:-1], 1.0, 1.0)


def test_detect_boundaries_refines_on_fine_frames_and_needs_them(hard_cut):
    steps, starts, step = hard_cut
    times = np.arange(0.0, 24.0, 0.5)
    novelty = np.exp(-0.5 * ((times - 12.5) / 1.0) ** 2)  # a coarse peak 0.5 s late
    # conf's eval.foote (the values detect_boundaries defaulted to before), with a low threshold.
    settings = peak_settings(peak_conf("foote", threshold_ratio=1.0))
    np.testing.assert_allclose(detect_boundaries(novelty, times, 24.0, None, None, **settings), [12.5])
    refined = detect_boundaries(novelty, times, 24.0, steps, starts, **{**settings, "local_radius_seconds": 1.0})
    assert refined.shape == (1,) and abs(refined[0] - 12.0) <= step
    with pytest.raises(ValueError, match="needs fine_features"):
        detect_boundaries(novelty, times, 24.0, None, None, **{**settings, "local_radius_seconds": 1.0})


def test_peak_settings_come_from_the_section_and_name_what_is_missing():
    section = peak_conf("ssmnet", refine=1)
    settings = peak_settings(section)
    assert list(settings) == list(PEAK_KEYS) and settings["refine"] is True
    assert {key: settings[key] for key in PEAK_KEYS if key != "refine"} == {
        key: section[key] for key in PEAK_KEYS if key != "refine"}
    with pytest.raises(ValueError, match="needs mean_window_seconds, local_window_seconds"):
        peak_settings({k: v for k, v in section.items() if k not in ("mean_window_seconds", "local_window_seconds")})
