"""mir_eval wiring: hit rates, pairwise F and NCE against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.evaluation import (
    SCORE_KEYS,
    score,
    trimmed_hit_rates,
)

# Reference: inner boundaries at 10, 20 and 30 s of a 40 s song.
REFERENCE = Segmentation.from_boundaries([10.0, 20.0, 30.0], ["A", "B", "A", "C"], 40.0, "ref")


def test_two_of_three_boundaries_within_half_a_second():
    estimate = Segmentation.from_boundaries([10.2, 20.4, 28.0], ["A", "B", "C", "D"], 40.0, "est")
    scores = score(REFERENCE, estimate)
    # Trimmed (song ends removed): 2 hits of 3 estimated and 3 reference boundaries at 0.5 s.
    assert scores["hr_0_5p_trim"] == pytest.approx(2 / 3)
    assert scores["hr_0_5r_trim"] == pytest.approx(2 / 3)
    assert scores["hr_0_5f_trim"] == pytest.approx(2 / 3)
    # At 3 s, 28 s is within 2 s of 30 s: 3 of 3.
    assert scores["hr_3f_trim"] == pytest.approx(1.0)
    # Untrimmed, 0 s and 40 s are hits too: 4 of 5.
    assert scores["hr_0_5f"] == pytest.approx(4 / 5)
    assert scores["hr_3f"] == pytest.approx(1.0)


def test_extra_boundary_lowers_precision_only():
    estimate = Segmentation.from_boundaries([10.2, 20.4, 28.0, 35.0], list("ABCDE"), 40.0, "est")
    scores = score(REFERENCE, estimate)
    p, r = 2 / 4, 2 / 3
    assert scores["hr_0_5p_trim"] == pytest.approx(p)
    assert scores["hr_0_5r_trim"] == pytest.approx(r)
    assert scores["hr_0_5f_trim"] == pytest.approx(2 * p * r / (p + r))  # 4/7
    assert scores["hr_3p_trim"] == pytest.approx(3 / 4)
    assert scores["hr_3r_trim"] == pytest.approx(1.0)


def test_label_scores_of_one_big_segment():
    reference = Segmentation.from_boundaries([10.0], ["A", "B"], 20.0, "ref")
    estimate = Segmentation.from_boundaries([], ["X"], 20.0, "est")
    scores = score(reference, estimate)
    # mir_eval samples labels every 0.1 s: 200 frames, two ref blocks of 100.
    same_ref = (2 * 100**2 - 200) / 2
    same_est = (200**2 - 200) / 2
    precision = same_ref / same_est
    assert scores["pairwise_p"] == pytest.approx(precision)
    assert scores["pairwise_r"] == pytest.approx(1.0)
    assert scores["pairwise_f"] == pytest.approx(2 * precision / (1 + precision))
    # mir_eval 0.8: with a single estimated label S_over is 0 by convention, and S_under = 1 - log 2 / log 2.
    assert scores["nce_over"] == scores["nce_under"] == scores["nce_f"] == 0.0


def test_nce_by_hand():
    # Frames (0.1 s): (A, X) 50, (A, Y) 50, (B, Y) 100.
    reference = Segmentation.from_boundaries([10.0], ["A", "B"], 20.0, "ref")
    estimate = Segmentation.from_boundaries([5.0], ["X", "Y"], 20.0, "est")
    scores = score(reference, estimate)
    over = 1 - 0.5 * np.log(2) / np.log(2)  # H(E|R): A splits evenly into X and Y, B is all Y
    h_third = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3))
    under = 1 - 0.75 * h_third / np.log(2)  # H(R|E): Y holds A and B as 1/3 and 2/3
    assert scores["nce_over"] == pytest.approx(over)
    assert scores["nce_under"] == pytest.approx(under)
    assert scores["nce_f"] == pytest.approx(2 * over * under / (over + under))


def test_perfect_estimate_with_renamed_labels_scores_one():
    estimate = Segmentation.from_boundaries([10.0, 20.0, 30.0], ["x", "y", "x", "z"], 40.0, "est")
    scores = score(REFERENCE, estimate)
    assert set(scores) == set(SCORE_KEYS)
    for key in SCORE_KEYS:
        assert scores[key] == pytest.approx(1.0), key


def test_estimate_shorter_than_reference_is_padded_to_its_duration():
    estimate = Segmentation.from_boundaries([10.0, 20.0], ["A", "B", "A"], 30.0, "est")
    scores = score(REFERENCE, estimate)
    # 30 s is the estimate's end, so it stays a boundary: 3 of 3 trimmed.
    assert scores["hr_0_5f_trim"] == pytest.approx(1.0)


def test_score_of_a_perfect_and_a_partial_estimate():
    perfect = Segmentation.from_boundaries([10.0, 20.0, 30.0], list("ABAC"), 40.0)
    half = Segmentation.from_boundaries([10.0, 25.0], list("ABC"), 40.0)
    assert score(REFERENCE, perfect)["hr_0_5f_trim"] == pytest.approx(1.0)
    p, r = 1 / 2, 1 / 3
    assert score(REFERENCE, half)["hr_0_5f_trim"] == pytest.approx(2 * p * r / (p + r))


@pytest.mark.parametrize("boundaries", [[10.2, 20.4, 28.0], [10.2, 20.4, 28.0, 35.0], [], [39.9]])
def test_trimmed_hit_rates_agree_with_score(boundaries):
    estimate = Segmentation.from_boundaries(boundaries, ["A"] * (len(boundaries) + 1), 40.0, "est")
    scores = score(REFERENCE, estimate)
    half, three = trimmed_hit_rates(REFERENCE, np.array(boundaries))
    assert half == pytest.approx(scores["hr_0_5f_trim"]) and three == pytest.approx(scores["hr_3f_trim"])
    if len(boundaries) == 3:
        assert (half, three) == (pytest.approx(2 / 3), pytest.approx(1.0))  # the hand count above
