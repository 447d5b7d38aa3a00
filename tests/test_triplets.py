from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from songfeel.triplets import COLUMNS, HUMAN_COLUMNS, build_triplets, read_human_answers


def _build(manifest, seed=0):
    durations = dict(zip(manifest["track_id"], manifest["duration_seconds"]))
    table, _ = build_triplets(manifest, durations, ["mood", "style"], label_per_anchor=4, self_per_track=4,
                              excerpt_seconds=10.0, seed=seed)
    return table


def test_label_triplets_share_labels_within_a_split(demo_manifest):
    table = _build(demo_manifest)
    assert list(table.columns) == list(COLUMNS)
    info = demo_manifest.set_index("track_id")
    label = table[table["kind"] == "label"]
    assert set(label["split"]) == {"train", "val", "test"}
    for _, row in label.iterrows():
        a, p, n = (info.loc[row[f"{r}_track"]] for r in ("anchor", "positive", "negative"))
        assert (a["mood"], a["style"]) == (p["mood"], p["style"])
        assert (a["mood"], a["style"]) != (n["mood"], n["style"])
        assert row["anchor_track"] != row["positive_track"]
        assert a["split"] == p["split"] == n["split"] == row["split"]
        assert row["anchor_start_s"] == 0.0 and row["anchor_end_s"] == a["duration_seconds"]


@pytest.mark.parametrize("label_columns, per_anchor", [([], 4), (["mood", "style"], 0)])
def test_an_unlabelled_library_gets_self_triplets_only(demo_manifest, label_columns, per_anchor):
    # no label columns (a library without tags), or none wanted: self-supervised triplets, for distillation
    durations = dict(zip(demo_manifest["track_id"], demo_manifest["duration_seconds"]))
    table, report = build_triplets(demo_manifest, durations, label_columns, per_anchor, 4, 10.0, seed=0)
    assert set(table["kind"]) == {"self"} and set(table["split"]) == {"train", "val", "test"}
    assert len(table) == len(_build(demo_manifest).query("kind == 'self'"))


def test_self_triplets_are_disjoint_excerpts_of_one_track(demo_manifest):
    table = _build(demo_manifest)
    info = demo_manifest.set_index("track_id")
    selfs = table[table["kind"] == "self"]
    assert len(selfs) == 4 * len(demo_manifest)
    for _, row in selfs.iterrows():
        assert row["anchor_track"] == row["positive_track"] != row["negative_track"]
        overlap = min(row["anchor_end_s"], row["positive_end_s"]) - max(row["anchor_start_s"], row["positive_start_s"])
        assert overlap <= 1e-3
        for role in ("anchor", "positive", "negative"):
            assert np.isclose(row[f"{role}_end_s"] - row[f"{role}_start_s"], 10.0, atol=2e-3)
            assert 0 <= row[f"{role}_start_s"] and row[f"{role}_end_s"] <= info.loc[row[f"{role}_track"], "duration_seconds"] + 1e-3
        assert info.loc[row["negative_track"], "split"] == row["split"]


def test_triplets_are_seeded(demo_manifest):
    assert _build(demo_manifest, seed=3).equals(_build(demo_manifest, seed=3))
    assert not _build(demo_manifest, seed=3).equals(_build(demo_manifest, seed=4))


def test_tracks_too_short_for_two_excerpts_get_no_self_triplets(demo_manifest):
    durations = dict(zip(demo_manifest["track_id"], demo_manifest["duration_seconds"]))
    table, _ = build_triplets(demo_manifest, durations, ["mood", "style"], 1, 2, excerpt_seconds=20.0, seed=0)
    assert (table["kind"] == "self").sum() == 0


def _genre_tracks():
    """Eight tracks with an FMA-like genre hierarchy (labels only: no audio is read)."""
    rows = [
        ("t0", "Rock", "Rock|Punk"), ("t1", "Rock", "Rock|Punk"), ("t2", "Rock", "Rock|Indie-Rock"),
        ("t3", "Rock", "Rock"), ("t4", "Jazz", "Jazz|Bebop"), ("t5", "Jazz", "Jazz"), ("t6", "", "Pop"),
        ("t7", "Jazz", "Jazz|Bebop"),
    ]
    frame = pd.DataFrame(rows, columns=["track_id", "genre", "genres"])
    frame["split"] = "train"
    return frame


def test_label_triplets_share_the_most_specific_genre():
    tracks = _genre_tracks()
    durations = {t: 30.0 for t in tracks["track_id"]}
    table, _ = build_triplets(tracks, durations, ["genre"], 20, 0, 10.0, seed=0, hierarchy_column="genres")
    info = tracks.set_index("track_id")
    assert "t6" not in set(table[["anchor_track", "positive_track", "negative_track"]].values.ravel())
    by_anchor = table.groupby("anchor_track")
    assert set(by_anchor.get_group("t0")["positive_track"]) == {"t1"}
    assert set(by_anchor.get_group("t0")["detail"]) == {"Punk"}
    assert set(by_anchor.get_group("t2")["positive_track"]) == {"t0", "t1", "t3"}  # no other Indie-Rock: Rock
    assert set(by_anchor.get_group("t2")["detail"]) == {"Rock"}
    assert set(by_anchor.get_group("t4")["positive_track"]) == {"t7"}
    for _, row in table.iterrows():
        assert info.loc[row["negative_track"], "genre"] != info.loc[row["anchor_track"], "genre"]


MECOMP_TRIPLETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mecomp_human_triplets.csv"


@pytest.mark.skipif(not MECOMP_TRIPLETS.is_file(), reason="shared/data is not beside the checkout")
def test_mecomp_answers_are_read_as_odd_one_out():
    answers = read_human_answers(MECOMP_TRIPLETS)
    assert len(answers) == 60  # of 2,000 rows, 60 are answered
    raw = pd.read_csv(MECOMP_TRIPLETS).dropna(subset=["anchor"]).reset_index(drop=True)
    first = raw.iloc[0]
    odd_position = 6 - int(first["anchor"]) - int(first["positive"])
    assert answers.iloc[0]["odd_one_out"] == f"fma:{int(first[f'song{odd_position}']):06d}"
    assert answers["song1"].str.match(r"^fma:\d{6}$").all()


def test_human_answers_resolve_by_majority_and_never_cross_splits(tmp_path, demo_manifest):
    ids = demo_manifest.sort_values("track_id")
    test_ids = ids.loc[ids["split"] == "test", "track_id"].tolist()
    train_ids = ids.loc[ids["split"] == "train", "track_id"].tolist()
    a, b, c = test_ids[:3]
    x, y, z = train_ids[:3]
    answers = pd.DataFrame([
        (a, b, c, c, "ann1"), (b, c, a, c, "ann2"), (c, a, b, a, "ann3"), (a, b, c, "", "ann4"),  # c wins 2-1
        (x, y, z, x, "ann1"), (x, y, z, y, "ann2"),  # a tie: dropped
        (a, b, x, x, "ann1"),  # crosses splits: dropped
        (a, b, "fma:000002", a, "ann1"),  # a song without features: dropped
    ], columns=["song1", "song2", "song3", "odd_one_out", "annotator"])
    path = tmp_path / "answers.csv"
    answers.to_csv(path, index=False)
    read = read_human_answers(path)
    durations = dict(zip(demo_manifest["track_id"], demo_manifest["duration_seconds"]))
    table, report = build_triplets(demo_manifest, durations, ["mood", "style"], 0, 0, 10.0, seed=0,
                                   human_answers=read)
    human = table[table["kind"] == "human"]
    assert len(human) == 1
    row = human.iloc[0]
    assert {row["anchor_track"], row["positive_track"]} == {a, b} and row["negative_track"] == c
    assert row["split"] == "test" and row["detail"] == "votes=2/4"
    assert report["human"] == {"answers": 8, "undecided_answers": 1, "questions": 4, "tied_questions": 1,
                               "resolved_questions": 3, "dropped_missing_tracks": 1, "dropped_cross_split": 1}


def test_answers_that_name_a_fourth_song_are_refused(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame([("a", "b", "c", "d", "x")], columns=HUMAN_COLUMNS).to_csv(path, index=False)
    with pytest.raises(ValueError, match="bad.csv: row 2"):
        read_human_answers(path)
