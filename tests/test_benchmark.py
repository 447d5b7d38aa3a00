import numpy as np
import pandas as pd
import pytest

from songfeel.benchmark import benchmark_table, markdown_table, heldout_triplets


def _table():
    return pd.DataFrame({
        "split": ["test", "test", "test", "train"],
        "kind": ["label", "label", "self", "label"],
        "anchor_track": ["a", "b", "a", "x"],
        "positive_track": ["b", "a", "a", "y"],
        "negative_track": ["c", "d", "c", "z"],
    })


def test_only_heldout_triplets_are_benchmarked():
    triplets = heldout_triplets(_table())
    assert list(triplets.columns) == ["anchor", "positive", "negative"]
    assert triplets.to_numpy().tolist() == [["a", "b", "c"], ["b", "a", "d"]]


def test_every_method_is_scored_on_the_same_triplets():
    triplets = heldout_triplets(_table())
    good = pd.DataFrame(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [6.0, 0.0]]), index=list("abcd"))
    bad = pd.DataFrame(np.array([[0.0, 0.0], [5.0, 0.0], [0.1, 0.0]]), index=list("abc"))  # no "d"
    labels = pd.Series(["x", "x", "y", "y"], index=list("abcd"))
    table, left_out = benchmark_table({"model": good}, {"baseline": bad}, triplets, n_resamples=100, labels=labels, k=1)
    assert left_out == 1  # (b, a, d): the baseline has no vector for d
    assert (table["n_triplets"] == 1).all()
    scores = dict(zip(table["method"], table["accuracy"]))
    assert scores == {"model": 1.0, "baseline": 0.0}
    assert list(table["kind"]) == ["variant", "baseline"]
    # the kept triplet (a, b, c): for "model", a and b are nearest each other (same label x), c's
    # nearest is b (label x, not y): precision@1 = 2/3
    retrieval = dict(zip(table["method"], table["precision_at_k"]))
    assert retrieval["model"] == pytest.approx(2 / 3)
    assert dict(zip(table["method"], table["odd_one_out"]))["model"] == 1.0
    text = markdown_table(table)
    assert "| model | variant | 1 | 100.0 % |" in text and "| baseline | baseline | 1 | 0.0 % |" in text
