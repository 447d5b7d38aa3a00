import numpy as np

from songfeel.triplets import COLUMNS, build_triplets


def _build(manifest, seed=0):
    durations = dict(zip(manifest["track_id"], manifest["duration_seconds"]))
    return build_triplets(manifest, durations, ["mood", "style"], label_per_anchor=4, self_per_track=4,
                          excerpt_seconds=10.0, seed=seed)


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
    table = build_triplets(demo_manifest, durations, ["mood", "style"], 1, 2, excerpt_seconds=20.0, seed=0)
    assert (table["kind"] == "self").sum() == 0
