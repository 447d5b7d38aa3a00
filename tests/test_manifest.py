import pandas as pd
import pytest

from songfeel import manifest
from songfeel.errors import ManifestError


def test_label_splits_are_disjoint_paired_and_stable():
    ids = [f"t{i}" for i in range(30)]
    groups = [f"g{i % 10}" for i in range(30)]
    splits = manifest.assign_label_splits(ids, groups, 0.15, 0.2, seed=0)
    assert splits == manifest.assign_label_splits(ids, groups, 0.15, 0.2, seed=0)
    assert splits.count("test") == 6 and splits.count("val") == 4  # round(4.5) == 4
    frame = pd.DataFrame({"group": groups, "split": splits})
    for split in ("val", "test"):
        counts = frame[frame["split"] == split].groupby("group").size()
        assert (counts >= 2).all()
    train_groups = set(frame.loc[frame["split"] == "train", "group"])
    assert train_groups == set(groups)


def test_round_trip_and_validation(tmp_path, demo_manifest):
    path = tmp_path / "manifest.csv"
    manifest.write(demo_manifest, path)
    back = manifest.read(path)
    pd.testing.assert_frame_equal(back, manifest.validate(demo_manifest), check_dtype=False)
    with pytest.raises(ManifestError, match="lacks columns"):
        manifest.validate(demo_manifest.drop(columns=["split"]))
    duplicated = pd.concat([demo_manifest, demo_manifest.head(1)])
    with pytest.raises(ManifestError, match="repeated"):
        manifest.validate(duplicated)
    bad = demo_manifest.copy()
    bad.loc[0, "track_id"] = "has space"
    with pytest.raises(ManifestError, match="malformed"):
        manifest.validate(bad)


def test_missing_manifest_names_the_file(tmp_path):
    with pytest.raises(ManifestError, match="nowhere.csv"):
        manifest.read(tmp_path / "nowhere.csv")


def test_group_splits_keep_each_group_whole_and_stay_put():
    artists = [f"artist{i % 40}" for i in range(400)]
    splits = manifest.assign_group_splits(artists, 0.1, 0.2, seed=0)
    by_artist = pd.DataFrame({"artist": artists, "split": splits}).groupby("artist")["split"].nunique()
    assert (by_artist == 1).all()
    shares = pd.Series(splits).value_counts(normalize=True)
    assert 0.05 < shares["test"] < 0.4 and 0.0 < shares["val"] < 0.25
    # adding artists does not move the others
    more = manifest.assign_group_splits(artists + ["newcomer"] * 5, 0.1, 0.2, seed=0)
    assert more[:400] == splits
    with pytest.raises(ValueError, match="bad split fractions"):
        manifest.assign_group_splits(artists, 0.6, 0.5, seed=0)


def test_group_split_overrides_pin_named_groups_only():
    artists = [f"artist{i % 40}" for i in range(400)]
    free = manifest.assign_group_splits(artists, 0.1, 0.2, seed=0)
    test_artist = next(a for a, s in zip(artists, free) if s == "test")
    pinned = manifest.assign_group_splits(artists, 0.1, 0.2, seed=0, overrides={test_artist: "train"})
    assert all(s == "train" for a, s in zip(artists, pinned) if a == test_artist)
    assert [s for a, s in zip(artists, pinned) if a != test_artist] == [
        s for a, s in zip(artists, free) if a != test_artist
    ]
    with pytest.raises(ValueError, match="unknown splits"):
        manifest.assign_group_splits(artists, 0.1, 0.2, seed=0, overrides={test_artist: "holdout"})
