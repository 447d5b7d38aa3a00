"""Peak picking on synthetic novelty curves with known peaks, and segment labelling."""

from __future__ import annotations

import numpy as np

from songfeel.structure.peaks import label_segments, letters_in_order, pick_peaks

TIMES = np.arange(0.0, 60.0, 0.5)


def bumps(centres, heights, width=1.0):
    return sum(h * np.exp(-0.5 * ((TIMES - c) / width) ** 2) for c, h in zip(centres, heights, strict=True))


def test_pick_peaks_finds_the_known_peaks_over_a_ripple():
    novelty = bumps([10.0, 25.0, 40.0], [1.0, 0.8, 0.6]) + 0.03 * np.sin(TIMES * 3.0) + 0.05
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 2.0, 12.0, 3.0), [10.0, 25.0, 40.0])
    assert len(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0)) > 3  # the ripple passes a low threshold


def test_pick_peaks_keeps_the_higher_of_two_close_peaks():
    novelty = bumps([20.0, 22.0, 45.0], [0.5, 0.9, 0.7], width=0.5)
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0), [22.0, 45.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 1.0), [20.0, 22.0, 45.0])


def test_song_ends_are_not_boundaries():
    novelty = bumps([0.0, 1.5, 30.0, 58.5], [2.0, 2.0, 1.0, 2.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0), [30.0])


def test_threshold_ratio_rejects_peaks_near_the_local_mean():
    novelty = 1.0 + bumps([15.0, 40.0], [1.0, 0.05])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.1, 12.0, 3.0), [15.0])
    np.testing.assert_allclose(pick_peaks(novelty, TIMES, 1.0, 12.0, 3.0), [15.0, 40.0])


def test_flat_top_counts_once_and_flat_curve_has_no_peak():
    novelty = np.zeros_like(TIMES)
    novelty[60:63] = 1.0  # 30.0, 30.5, 31.0 s
    assert len(pick_peaks(novelty, TIMES, 1.0, 12.0, 0.1)) == 1
    assert len(pick_peaks(np.ones_like(TIMES), TIMES)) == 0


def test_label_segments_groups_repeated_segments():
    times = np.arange(0.0, 30.0, 1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    features = np.array([a if (t < 10 or t >= 20) else b for t in times]) + 0.01 * rng.normal(size=(30, 8))
    assert label_segments(features, times, np.array([10.0, 20.0])) == ["A", "B", "A"]
    assert letters_in_order([7, 3, 7, 9]) == ["A", "B", "A", "C"]


def test_refined_peaks_find_the_vertex_between_frames():
    """Sampled Gaussian bumps centred between frames: the parabola's vertex lands close to the true centre."""
    times = np.arange(0.0, 60.0, 0.5)
    centres = [10.2, 25.37, 40.0, 51.1]
    novelty = sum(np.exp(-0.5 * ((times - c) / 1.0) ** 2) for c in centres)
    coarse = pick_peaks(novelty, times, 1.0, 12.0, 3.0)
    fine = pick_peaks(novelty, times, 1.0, 12.0, 3.0, refine=True)
    np.testing.assert_allclose(coarse, [10.0, 25.5, 40.0, 51.0])  # the frame grid
    np.testing.assert_allclose(fine, centres, atol=0.03)
    assert np.abs(fine - centres).max() < np.abs(coarse - centres).max()
    flat = np.zeros_like(times)
    flat[40:43] = [0.0, 1.0, 0.0]
    np.testing.assert_allclose(pick_peaks(flat, times, 1.0, 12.0, 3.0, refine=True), [times[41]])
