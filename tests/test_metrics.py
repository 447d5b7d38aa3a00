import math

import numpy as np
import pytest

from songfeel.metrics.consistency import (
    consistency_metrics,
    sdc,
    similarity_matrix,
    vendi_score,
)
from songfeel.metrics.triplet import triplet_accuracy


def test_identical_segments_are_consistent_and_not_diverse():
    segments = np.tile(np.array([[0.3, -1.2, 2.0]]), (5, 1))
    assert sdc(segments) == pytest.approx(1.0)
    assert vendi_score(segments) == pytest.approx(1.0)


def test_orthogonal_segments_are_maximally_diverse():
    segments = np.eye(4) * 3.0
    assert sdc(segments) == pytest.approx(0.0)
    assert vendi_score(segments) == pytest.approx(4.0)
    assert consistency_metrics(segments)["vendi_per_segment"] == pytest.approx(1.0)


def test_sdc_compares_the_first_segment_with_later_ones():
    segments = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert sdc(segments) == pytest.approx((1.0 + 0.0 - 1.0) / 3)
    ssm = similarity_matrix(segments)
    np.testing.assert_allclose(np.diag(ssm), 1.0)


def test_pitfalls_one_segment_and_zero_embeddings():
    metrics = consistency_metrics(np.ones((1, 8)))
    assert math.isnan(metrics["sdc"]) and math.isnan(metrics["vendi_score"])
    with pytest.raises(ValueError, match="non-zero"):
        sdc(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_triplet_accuracy():
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [3.0, 0.0]])
    n = np.array([[2.0, 0.0], [1.0, 0.0]])
    assert triplet_accuracy(a, p, n) == 0.5
    assert math.isnan(triplet_accuracy(a[:0], p[:0], n[:0]))


# --- per-triplet outcomes and bootstrap confidence intervals -------------------------------------

from songfeel.metrics.bootstrap import bootstrap_ci  # noqa: E402
from songfeel.metrics.triplet import triplet_correct  # noqa: E402


def test_triplet_correct_counts_ties_as_wrong_and_averages_to_the_accuracy():
    a = np.zeros((3, 2))
    p = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    n = np.array([[2.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # right, wrong, tie
    correct = triplet_correct(a, p, n)
    assert correct.dtype == bool and correct.tolist() == [True, False, False]
    assert correct.mean() == pytest.approx(triplet_accuracy(a, p, n))
    assert triplet_correct(a[:0], p[:0], n[:0]).shape == (0,)
    with pytest.raises(ValueError, match="one shape"):
        triplet_correct(a, p[:2], n)


def _outcomes(n: int, p: float = 0.7, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def test_bootstrap_ci_contains_the_mean_and_is_deterministic_for_a_seed():
    correct = _outcomes(200)
    mean, low, high = bootstrap_ci(correct)
    assert mean == pytest.approx(correct.mean())
    assert 0.0 <= low < mean < high <= 1.0
    # The normal approximation's half-width, 1.96 * sqrt(p (1 - p) / n), is about 0.064 here.
    assert (high - low) / 2 == pytest.approx(1.96 * np.sqrt(mean * (1 - mean) / 200), rel=0.2)
    assert bootstrap_ci(correct, seed=0) == (mean, low, high)
    # Another seed moves the bounds by Monte Carlo noise only (accuracies here are multiples of 1/200).
    _, low_other, high_other = bootstrap_ci(correct, seed=5)
    assert low_other == pytest.approx(low, abs=0.011) and high_other == pytest.approx(high, abs=0.011)
    # Draws differ by seed: few resamples make the interpolated bounds tell them apart.
    assert bootstrap_ci(correct, n_resamples=25, seed=1) != bootstrap_ci(correct, n_resamples=25, seed=2)


def test_bootstrap_ci_of_real_valued_scores_and_edge_cases():
    """Segmentation scores are real numbers in [0, 1], not outcomes: the same bootstrap serves them."""
    values = np.random.default_rng(1).uniform(size=30)
    mean, low, high = bootstrap_ci(values, 500, seed=3)
    assert low < mean < high and mean == pytest.approx(values.mean())
    assert bootstrap_ci(np.full(5, 0.25), 100) == (0.25, 0.25, 0.25)
    assert all(np.isnan(bootstrap_ci(np.array([]), 100)))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(values, 0)


def test_bootstrap_ci_narrows_with_more_data():
    _, low_small, high_small = bootstrap_ci(_outcomes(100))
    _, low_large, high_large = bootstrap_ci(_outcomes(10_000))
    assert high_large - low_large < (high_small - low_small) / 5  # width ~ 1 / sqrt(n): 10x narrower


def test_cluster_bootstrap_is_wider_when_clusters_hold_copies():
    base = _outcomes(50)
    copies = np.repeat(base, 10)  # 500 triplets, but only 50 independent outcomes
    clusters = np.repeat(np.arange(50), 10)
    _, low_plain, high_plain = bootstrap_ci(copies)
    mean, low_cluster, high_cluster = bootstrap_ci(copies, clusters=clusters)
    assert mean == pytest.approx(base.mean())
    assert high_cluster - low_cluster > 2 * (high_plain - low_plain)  # sqrt(10) wider in theory
    # Resampling clusters of copies is resampling the 50 originals.
    _, low_base, high_base = bootstrap_ci(base)
    assert high_cluster - low_cluster == pytest.approx(high_base - low_base, abs=0.03)
    # String labels (track ids) work as well as integers.
    labels = np.array([f"track{c}" for c in clusters])
    assert bootstrap_ci(copies, clusters=labels)[0] == pytest.approx(base.mean())


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci(np.ones(30, dtype=bool)) == (1.0, 1.0, 1.0)
    assert bootstrap_ci(np.ones(30, dtype=bool), clusters=np.arange(30) % 4) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([], dtype=bool)))
    with pytest.raises(ValueError, match="clusters"):
        bootstrap_ci(np.ones(3), clusters=np.arange(2))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.ones(3), confidence=1.0)
    # A larger confidence gives a wider interval.
    correct = _outcomes(300)
    _, low90, high90 = bootstrap_ci(correct, confidence=0.90)
    _, low99, high99 = bootstrap_ci(correct, confidence=0.99)
    assert low99 < low90 and high99 > high90


def test_odd_one_out_needs_the_pair_to_be_the_closest_of_three():
    from songfeel.metrics.triplet import odd_one_out_correct
    a = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    n = np.array([[-3.0, 0.0], [1.5, 0.0], [4.0, 0.0]])
    # 1: d(a,p)=1 < d(a,n)=3, d(p,n)=4: right. 2: d(p,n)=0.5 is the closest pair: wrong in
    # odd-one-out form although the 2-way form says right. 3: d(a,p)=3 > d(p,n)=1: wrong.
    assert odd_one_out_correct(a, p, n).tolist() == [True, False, False]
    assert triplet_correct(a, p, n).tolist() == [True, True, True]
    rng = np.random.default_rng(0)
    a, p, n = rng.normal(size=(3, 3000, 8))
    assert abs(odd_one_out_correct(a, p, n).mean() - 1 / 3) < 0.03  # chance is 1/3


def _brute_force_map(embeddings, labels):
    scores = []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i]
        others.sort(key=lambda j: (np.linalg.norm(embeddings[i] - embeddings[j]), j))
        relevant = [labels[j] == labels[i] for j in others]
        if not any(relevant):
            continue
        hits, total = 0, 0.0
        for rank, rel in enumerate(relevant, start=1):
            if rel:
                hits += 1
                total += hits / rank
        scores.append(total / sum(relevant))
    return float(np.mean(scores))


def test_retrieval_metrics_match_hand_and_brute_force_values():
    from songfeel.metrics.retrieval import per_query, precision_at_k

    def mean_average_precision(x, y):
        return float(np.nanmean(per_query(x, y, 1)[1]))
    points = np.array([[0.0], [0.1], [5.0], [5.2], [10.0]])
    labels = ["a", "a", "b", "b", "a"]
    # nearest others: 0->1 (a), 1->0 (a), 2->3 (b), 3->2 (b), 4->3 (b)
    assert precision_at_k(points, labels, 1) == pytest.approx(4 / 5)
    # songs 0 and 1 find the other at rank 1 and song 4 at rank 4: AP = (1/1 + 2/4) / 2;
    # songs 2 and 3 find each other at rank 1: AP = 1; song 4 ranks 3(b), 2(b), 1(a), 0(a): AP = (1/3 + 2/4) / 2
    expected = np.mean([0.75, 0.75, 1.0, 1.0, (1 / 3 + 2 / 4) / 2])
    assert mean_average_precision(points, labels) == pytest.approx(expected)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.integers(0, 4, size=40)
    assert mean_average_precision(x, y) == pytest.approx(_brute_force_map(x, y))
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(points, labels, 5)
