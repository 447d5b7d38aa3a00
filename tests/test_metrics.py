import math

import numpy as np
import pytest

from songfeel.metrics.structure import sdc, similarity_matrix, structure_metrics, vendi_score
from songfeel.metrics.triplet import triplet_accuracy


def test_identical_segments_are_consistent_and_not_diverse():
    segments = np.tile(np.array([[0.3, -1.2, 2.0]]), (5, 1))
    assert sdc(segments) == pytest.approx(1.0)
    assert vendi_score(segments) == pytest.approx(1.0)


def test_orthogonal_segments_are_maximally_diverse():
    segments = np.eye(4) * 3.0
    assert sdc(segments) == pytest.approx(0.0)
    assert vendi_score(segments) == pytest.approx(4.0)
    assert structure_metrics(segments)["vendi_per_segment"] == pytest.approx(1.0)


def test_sdc_compares_the_first_segment_with_later_ones():
    segments = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert sdc(segments) == pytest.approx((1.0 + 0.0 - 1.0) / 3)
    ssm = similarity_matrix(segments)
    np.testing.assert_allclose(np.diag(ssm), 1.0)


def test_pitfalls_one_segment_and_zero_embeddings():
    metrics = structure_metrics(np.ones((1, 8)))
    assert math.isnan(metrics["sdc"]) and math.isnan(metrics["vendi_score"])
    with pytest.raises(ValueError, match="non-zero"):
        sdc(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_triplet_accuracy():
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [3.0, 0.0]])
    n = np.array([[2.0, 0.0], [1.0, 0.0]])
    assert triplet_accuracy(a, p, n) == 0.5
    assert math.isnan(triplet_accuracy(a[:0], p[:0], n[:0]))
