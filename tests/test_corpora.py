import os
import subprocess

import numpy as np
import pytest
from omegaconf import OmegaConf

from songfeel import corpora
from songfeel.audio import load_audio
from songfeel.features import log_mel
from songfeel.store import FeatureStore

PACKAGE = "extremetuxracer-data"


def _installed(package: str) -> bool:
    return subprocess.run(["dpkg", "-s", package], capture_output=True).returncode == 0


def test_origin_of_sources():
    assert corpora.origin_of("demo") == "ai"
    assert {corpora.origin_of(s) for s in ("soundtracks", "fma", "local")} == {"human"}


def test_ai_demo_songs_are_labelled_by_mood_and_style():
    songs = corpora.ai_demo_songs()
    assert len(songs) == 28
    track_id, (path, label) = next(iter(songs.items()))
    assert track_id == "demo:calm_acoustic_1" and path.endswith("calm/calm_acoustic_1.opus")
    assert label == "calm/acoustic"


def test_featurise_matches_the_stored_features_and_reports_bad_files(tmp_path, small_store):
    store_path, rows = small_store
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS not really")
    first = rows.iloc[0]
    with FeatureStore(store_path) as store:
        songs = {first["track_id"]: (first["path"], "calm"), "broken": (str(broken), "x")}
        corpus = corpora.featurise(songs, store.config, "test corpus", "ai")
        assert corpus.track_ids == [first["track_id"]]
        assert corpus.skipped[0]["path"] == str(broken) and corpus.skipped[0]["error"]
        expected = log_mel(load_audio(first["path"], store.config.sample_rate), store.config)
        np.testing.assert_allclose(corpus.logmel(first["track_id"]), expected)
        assert corpus.n_frames(first["track_id"]) == expected.shape[0]
        np.testing.assert_allclose(corpus.logmel(first["track_id"], 3, 9), expected[3:9])
    with pytest.raises(ValueError, match="origin"):
        corpora.featurise({}, corpus.config, "x", "robot")


def test_human_reference_corpus_takes_long_songs_round_robin(feature_config):
    if not _installed(PACKAGE):
        if os.environ.get("CI"):
            pytest.fail(f"{PACKAGE} must be installed in CI (.ci/run installs it)")
        pytest.skip(f"{PACKAGE} is not installed")
    songs = corpora.human_soundtrack_songs([PACKAGE, "no-such-package"], min_seconds=60.0, max_songs=2)
    assert len(songs) == 2
    assert all(t.startswith(f"soundtracks:{PACKAGE}:") and label == PACKAGE for t, (_, label) in songs.items())
    cfg = OmegaConf.create({"human_packages": [PACKAGE], "min_seconds": 60.0, "max_songs": 1})
    corpus = corpora.reference_corpus("human", feature_config, cfg)
    assert corpus.origin == "human" and len(corpus.track_ids) == 1
    (track_id,) = corpus.track_ids
    assert corpus.n_frames(track_id) >= 60 * feature_config.frame_rate - 1
