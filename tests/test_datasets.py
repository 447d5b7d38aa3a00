from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from songfeel import manifest
from songfeel.datasets import build_manifest


def test_demo_manifest_has_every_track_with_labels(demo_manifest):
    assert len(demo_manifest) == 28  # the package ships 28 .opus files
    assert set(demo_manifest["mood"]) == {"calm", "energetic", "happy", "nostalgic", "tender"}
    assert set(demo_manifest["style"]) == {"acoustic", "electronic"}
    for _, row in demo_manifest.iterrows():
        assert row["track_id"] == f"demo:{row['mood']}_{row['style']}_" + row["track_id"].split("_", 2)[2]
        assert f"/{row['mood']}/" in row["path"]
        assert 20 < row["duration_seconds"] < 40
    manifest.validate(demo_manifest)


def test_demo_splits_hold_label_pairs(demo_manifest):
    key = manifest.label_key(demo_manifest, ["mood", "style"])
    for split in ("val", "test"):
        counts = key[demo_manifest["split"] == split].value_counts()
        assert len(counts) >= 2 and (counts >= 2).all()


def test_build_manifest_writes_csv(tmp_path):
    cfg = OmegaConf.load("conf/dataset/demo.yaml")
    out, skipped = tmp_path / "m.csv", tmp_path / "skipped.csv"
    built = build_manifest(cfg, out, skipped)
    assert manifest.read(out)["track_id"].tolist() == sorted(built["track_id"])
    assert list(pd.read_csv(skipped).columns) == ["path", "error"]


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        build_manifest(OmegaConf.create({"name": "nope"}), tmp_path / "m.csv")


def test_every_dataset_config_names_a_source():
    from songfeel.datasets import SOURCES

    names = {OmegaConf.load(p).name for p in Path("conf/dataset").glob("*.yaml")}
    assert names == set(SOURCES)
