import numpy as np
import pandas as pd
import pytest

from songfeel.benchmark import (Method, heldout_table, markdown_table, retrieval_table, score_triplets,
                                teacher_share_markdown, teacher_share_table, triplet_roles, whole_song_method)
from songfeel.store import FeatureStore


def brute_force(vectors, triplets):
    """Loop-by-loop 2-way and odd-one-out accuracy, Euclidean."""
    two_way = odd = 0
    for a, p, n in triplets:
        ap = np.linalg.norm(vectors[a] - vectors[p])
        an = np.linalg.norm(vectors[a] - vectors[n])
        pn = np.linalg.norm(vectors[p] - vectors[n])
        two_way += ap < an
        odd += ap < an and ap < pn
    return two_way / len(triplets), odd / len(triplets)


def _whole(track, n=10):
    return (track, 0, n)


def test_scores_agree_with_brute_force_and_count_the_same_triplets():
    rng = np.random.default_rng(0)
    tracks = [f"t{i}" for i in range(12)]
    n_frames = dict.fromkeys(tracks, 10)
    whole = {_whole(t): rng.normal(size=4) for t in tracks}
    excerpts = {(t, 0, 5): rng.normal(size=4) for t in tracks}
    label = [tuple(_whole(t) for t in rng.choice(tracks, 3, replace=False)) for _ in range(40)]
    self_ = [((t, 0, 5), _whole(t), _whole(u)) for t, u in zip(tracks, tracks[1:])]
    triplets = pd.DataFrame({"split": "test", "source": ["label"] * 40 + ["self"] * len(self_),
                             "anchor": [t[0] for t in label + self_], "positive": [t[1] for t in label + self_],
                             "negative": [t[2] for t in label + self_]})
    model = Method("model", "variant", {**whole, **excerpts})
    songs = pd.DataFrame(np.stack([whole[_whole(t)] for t in tracks[1:]]), index=tracks[1:])  # no t0
    baseline = whole_song_method("baseline", "baseline", songs, n_frames)
    scores, coverage = score_triplets([model, baseline], triplets, n_resamples=200, reference="baseline")
    kept_label = [t for t in label if all(e[0] != "t0" for e in t)]
    by = scores.set_index(["method", "source"])
    assert by.loc[("model", "label"), "n_triplets"] == by.loc[("baseline", "label"), "n_triplets"] == len(kept_label)
    expected = brute_force({**whole, **excerpts}, kept_label)
    assert by.loc[("model", "label"), "accuracy"] == pytest.approx(expected[0])
    assert by.loc[("model", "label"), "odd_one_out"] == pytest.approx(expected[1])
    assert by.loc[("baseline", "label"), "accuracy"] == pytest.approx(expected[0])  # same vectors
    # the whole-song baseline cannot score excerpt triplets: it takes no part in "self"
    assert ("baseline", "self") not in by.index
    assert by.loc[("model", "self"), "accuracy"] == pytest.approx(brute_force({**whole, **excerpts}, self_)[0])
    # paired difference to the reference: exact on the same triplets, NaN for the reference itself
    assert by.loc[("model", "label"), "diff_vs_reference"] == pytest.approx(0.0)
    assert by.loc[("model", "label"), "ooo_diff_vs_reference"] == pytest.approx(0.0)
    assert np.isnan(by.loc[("baseline", "label"), "diff_vs_reference"])
    assert np.isnan(by.loc[("model", "self"), "diff_vs_reference"])  # the reference takes no part there
    cov = coverage.set_index("source")
    assert cov.loc["label", "n_triplets"] == 40 and cov.loc["label", "n_scored"] == len(kept_label)
    assert cov.loc["self", "methods"] == "model"
    assert (scores["ci_low"] <= scores["accuracy"]).all() and (scores["accuracy"] <= scores["ci_high"]).all()


def test_retrieval_uses_the_songs_every_method_has_and_the_heldout_table_merges_it():
    n_frames = dict.fromkeys("abcd", 10)
    good = whole_song_method("model", "variant", pd.DataFrame(
        [[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [6.0, 0.0]], index=list("abcd")), n_frames)
    bad = whole_song_method("baseline", "baseline", pd.DataFrame(
        [[0.0, 0.0], [5.0, 0.0], [0.1, 0.0]], index=list("abc")), n_frames)
    labels = pd.Series(["x", "x", "y", "y"], index=list("abcd"))
    table = retrieval_table([good, bad], {"test": list("abcd")}, n_frames, labels, k=1)
    assert (table["n_songs"] == 3).all()  # "d" is missing for the baseline
    # model on a, b, c: a<->b (same label), c's nearest is b (other label): precision@1 = 2/3
    assert dict(zip(table["method"], table["precision_at_k"]))["model"] == pytest.approx(2 / 3)
    assert table[["precision_at_k_diff", "map_diff"]].isna().all().all()  # no "mecomp" here
    # Paired against the baseline, query by query: precision@1 model [1, 1, 0] vs baseline [0, 0, 0];
    # average precision model [1, 1, -] vs baseline [1/2, 1/2, -] (c has no relevant song among a, b, c).
    table = retrieval_table([good, bad], {"test": list("abcd")}, n_frames, labels, k=1, reference="baseline",
                            n_resamples=200)
    model = table.set_index("method").loc["model"]
    assert model["precision_at_k_diff"] == pytest.approx(2 / 3)
    assert 0.0 <= model["precision_at_k_diff_ci_low"] < 2 / 3 < model["precision_at_k_diff_ci_high"] == 1.0
    assert (model["map_diff"], model["map_diff_ci_low"], model["map_diff_ci_high"]) == (0.5, 0.5, 0.5)
    assert table.set_index("method").loc["baseline", ["precision_at_k_diff", "map_diff"]].isna().all()
    triplets = pd.DataFrame({"split": "test", "source": "label", "anchor": [_whole("a")],
                             "positive": [_whole("b")], "negative": [_whole("c")]})
    scores, _ = score_triplets([good, bad], triplets, n_resamples=50)
    assert np.isnan(scores.set_index("method").loc["model", "diff_vs_reference"])  # no "mecomp" here
    scores, _ = score_triplets([good, bad], triplets, n_resamples=50, reference="baseline")
    row = scores.set_index("method").loc["model"]
    assert (row["diff_vs_reference"], row["diff_ci_low"], row["diff_ci_high"]) == (1.0, 1.0, 1.0)
    held = heldout_table(scores, table)
    assert list(held["method"]) == ["model", "baseline"]  # variants first
    assert list(held["accuracy"]) == [1.0, 0.0]
    text = markdown_table(held)
    assert "| model | variant | 1 | 100.0 % |" in text and "| baseline | baseline | 1 | 0.0 % |" in text
    assert text.count("+100.0 pp [+100.0, +100.0]") == 2  # 2-way and odd-one-out
    assert "+50.0 pp [+50.0, +50.0]" in text  # mAP against the baseline


def test_teacher_share_is_the_lead_over_chance_kept_and_paired_with_the_teacher():
    # Songs a, b (label x) and c, d (label y) on a line. The teacher separates the labels; the student
    # (a=0, b=1, c=2.6, d=5) gets (c, d, b) wrong, |c-d| 2.4 > |c-b| 1.6, and the other three right.
    n_frames = dict.fromkeys("abcd", 10)
    points = {"teacher": [0.0, 0.1, 5.0, 5.1], "student": [0.0, 1.0, 2.6, 5.0], "baseline": [0.0, 4.0, 1.0, 5.0]}
    methods = [whole_song_method(name, "baseline" if name != "student" else "variant",
                                 pd.DataFrame([[v, 0.0] for v in values], index=list("abcd")), n_frames)
               for name, values in points.items()]
    labels = pd.Series(["x", "x", "y", "y"], index=list("abcd"))
    roles = [("a", "b", "c"), ("b", "a", "c"), ("c", "d", "b"), ("d", "c", "a")]
    triplets = pd.DataFrame({"split": "test", "source": "label", "anchor": [_whole(t[0]) for t in roles],
                             "positive": [_whole(t[1]) for t in roles], "negative": [_whole(t[2]) for t in roles]})
    scores, _ = score_triplets(methods, triplets, n_resamples=200, reference="teacher")
    retrieval = retrieval_table(methods, {"test": list("abcd")}, n_frames, labels, k=1, reference="teacher",
                                n_resamples=200)
    table = teacher_share_table(scores, retrieval).set_index("method")
    assert list(table.index) == ["student", "baseline"]  # variants first; no row for the teacher itself
    student = table.loc["student"]
    assert (student["accuracy"], student["teacher_accuracy"]) == (0.75, 1.0)
    assert student["share_of_teacher"] == pytest.approx(0.5)  # (0.75 - 0.5) / (1.0 - 0.5)
    assert student["diff_vs_teacher"] == pytest.approx(-0.25)
    assert student["diff_ci_high"] <= 0.0  # the teacher is never wrong where the student is right
    # precision@1: the teacher is right for every query; the student's c finds b (label x): 3 of 4
    assert student["teacher_precision_at_k"] == 1.0
    assert student["precision_at_k"] == pytest.approx(0.75)
    assert student["precision_share_of_teacher"] == pytest.approx(0.75)
    assert student["precision_at_k_diff"] == pytest.approx(-0.25)
    text = teacher_share_markdown(table.reset_index())
    assert "The teacher scores 100.0 % 2-way accuracy" in text
    assert "| student | variant | 75.0 % | -25.0 pp [" in text and "| 50 % | 0.750 |" in text
    # no teacher scored: an empty table and a sentence that says so
    scores, _ = score_triplets(methods[1:], triplets, n_resamples=50)
    assert teacher_share_table(scores, retrieval).empty
    assert "not scored" in teacher_share_markdown(teacher_share_table(scores, retrieval))


def test_triplet_roles_turn_seconds_into_clipped_frames(small_store):
    path, rows = small_store
    with FeatureStore(path) as store:
        a, b = rows["track_id"][:2]
        table = pd.DataFrame({"triplet_id": [0, 1], "split": ["test", "val"], "kind": ["label", "self"],
                              "anchor_track": [a, a], "anchor_start_s": [0.0, 1.0], "anchor_end_s": [999.0, 3.0],
                              "positive_track": [b, a], "positive_start_s": [0.0, 4.0], "positive_end_s": [999.0, 6.0],
                              "negative_track": [b, "missing"], "negative_start_s": [0.0, 0.0],
                              "negative_end_s": [1.0, 1.0]})
        roles = triplet_roles(table, store)
        assert len(roles) == 1  # the triplet naming a missing track is left out
        assert roles.loc[0, "anchor"] == (a, 0, store.n_frames(a))
        assert list(roles.columns) == ["split", "source", "anchor", "positive", "negative"]


def test_heldout_set_reads_a_split_folder_over_the_store(small_store, tmp_path):
    from songfeel import manifest as manifest_io
    from songfeel.benchmark import heldout_set

    path, rows = small_store
    manifest_io.write(rows, tmp_path / "manifest.csv")
    test = rows.loc[rows["split"] == "test", "track_id"].tolist()
    a, b = test[:2]
    pd.DataFrame({"triplet_id": [0, 1], "split": ["test", "train"], "kind": ["label", "label"],
                  "anchor_track": [a, a], "anchor_start_s": [0.0, 0.0], "anchor_end_s": [999.0, 999.0],
                  "positive_track": [b, b], "positive_start_s": [0.0, 0.0], "positive_end_s": [999.0, 999.0],
                  "negative_track": [b, b], "negative_start_s": [0.0, 0.0], "negative_end_s": [999.0, 999.0]}
                 ).to_csv(tmp_path / "triplets.csv", index=False)
    held_out = heldout_set(tmp_path, path, label_column="genre" if "genre" in rows else "album")
    assert held_out.test_ids == test and set(held_out.train_ids) == set(rows.loc[rows["split"] == "train", "track_id"])
    assert len(held_out.triplets) == 1  # the test split's label triplet, not the train one
    assert held_out.train_sample(2) == held_out.train_sample(2) and len(held_out.train_sample(99)) == len(held_out.train_ids)
