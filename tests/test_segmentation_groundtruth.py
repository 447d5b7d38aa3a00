"""Ground-truth SSM and novelty curve of a hand-made annotation, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.groundtruth import (
    boundary_novelty,
    frame_labels,
    ssm,
)

# A [0, 2), B [2, 4), A [4, 6): frames at 0..5 s carry A A B B A A.
ABA = Segmentation.from_boundaries([2.0, 4.0], ["A", "B", "A"], 6.0, "aba")


def test_ssm_is_one_where_labels_match():
    times = np.arange(6.0, step=1.0)
    expected = np.array([
        [1, 1, 0, 0, 1, 1],
        [1, 1, 0, 0, 1, 1],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 1],
        [1, 1, 0, 0, 1, 1],
    ], dtype=np.float32)
    matrix = ssm(ABA, times)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, expected)


def test_frames_outside_segments_share_one_no_segment_label():
    seg = Segmentation(np.array([[1.0, 2.0], [3.0, 4.0]]), ["A", "A"], 5.0, "gaps")
    times = np.arange(5.0, step=1.0)
    labels = frame_labels(seg, times)
    assert labels[1] == "A" and labels[3] == "A" and labels[0] == labels[2] == labels[4] != "A"
    matrix = ssm(seg, times)
    np.testing.assert_array_equal(np.diag(matrix), 1)
    np.testing.assert_array_equal(matrix[1], [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(matrix[0], [1, 0, 1, 0, 1])


def test_boundary_novelty_by_hand():
    times = np.arange(6.0, step=1.0)
    e1, e4 = np.exp(-0.5), np.exp(-2.0)  # one and two frames from a boundary, sigma = 1 s
    # Boundaries at 2 s and 4 s; frame 0 is 4 s from the second (beyond 3 sigma: 0).
    expected = [e4, e1, 1.0, e1, 1.0, e1]
    np.testing.assert_allclose(boundary_novelty(ABA, times, sigma_seconds=1.0), expected, rtol=1e-6)


def test_boundary_novelty_impulses_on_nearest_frames_and_song_ends_excluded():
    seg = Segmentation.from_boundaries([2.4, 4.6], ["A", "B", "C"], 6.0)
    novelty = boundary_novelty(seg, np.arange(6.0, step=1.0), sigma_seconds=0.0)
    np.testing.assert_array_equal(novelty, [0, 0, 1, 0, 0, 1])
    assert novelty.dtype == np.float32
    single = Segmentation.from_boundaries([], ["A"], 6.0)
    np.testing.assert_array_equal(boundary_novelty(single, np.arange(6.0, step=1.0), 1.0), 0)
    with pytest.raises(ValueError):
        boundary_novelty(ABA, np.arange(6.0, step=1.0), -1.0)
