import h5py
import numpy as np
import pytest

from songfeel.audio import load_audio
from songfeel.features import FEATURE_VERSION, log_mel
from songfeel.store import FeatureStore, write_store


def test_store_holds_the_features_of_real_tracks(small_store, feature_config):
    path, rows = small_store
    with FeatureStore(path) as store:
        assert store.track_ids == sorted(rows["track_id"])
        assert store.config == feature_config
        track_id, audio_path = rows.iloc[0]["track_id"], rows.iloc[0]["path"]
        expected = log_mel(load_audio(audio_path), feature_config)
        assert store.n_frames(track_id) == expected.shape[0]
        np.testing.assert_allclose(store.logmel(track_id), expected, atol=1e-4)
        np.testing.assert_array_equal(store.logmel(track_id, 100, 143), store.logmel(track_id)[100:143])
        assert store.mfcc(track_id).shape == (expected.shape[0], feature_config.n_mfcc)
    with h5py.File(path) as h5:
        assert h5.attrs["feature_version"] == FEATURE_VERSION
        assert h5.attrs["sample_rate"] == 22050 and h5.attrs["hop_length"] == feature_config.hop_length
        assert h5["tracks"][track_id]["logmel"].compression == "lzf"


def test_bad_tracks_are_reported_and_the_rest_goes_on(tmp_path, demo_manifest, feature_config):
    rows = demo_manifest.head(2).copy()
    corrupt = tmp_path / "corrupt.opus"
    corrupt.write_bytes(b"OggS" + bytes(500))
    bad = rows.iloc[:1].copy()
    bad["track_id"], bad["path"] = "demo:corrupt", str(corrupt)
    missing = rows.iloc[:1].copy()
    missing["track_id"], missing["path"] = "demo:missing", str(tmp_path / "missing.opus")
    import pandas as pd

    skipped = write_store(pd.concat([rows, bad, missing]), tmp_path / "f.h5", feature_config, n_jobs=1)
    assert sorted(skipped["track_id"]) == ["demo:corrupt", "demo:missing"]
    assert skipped.set_index("track_id").loc["demo:corrupt", "path"] == str(corrupt)
    assert "AudioDecodeError" in skipped.set_index("track_id").loc["demo:missing", "error"]
    with FeatureStore(tmp_path / "f.h5") as store:
        assert store.track_ids == sorted(rows["track_id"])
    assert not (tmp_path / "f.h5.tmp").exists()


def test_missing_store_names_stage_02(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 02"):
        FeatureStore(tmp_path / "none.h5")
