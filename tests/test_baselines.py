"""The baselines on real demo tracks: MFCC statistics, bliss-rs features and MECOMP's model."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy.spatial.distance import mahalanobis, pdist

from songfeel.audio import load_audio
from songfeel.baselines import bliss
from songfeel.baselines.bliss import (
    BLISS_FEATURE_GROUPS,
    BLISS_FEATURES,
    bliss_feature_weights,
    bliss_features,
    bliss_group_weighted_vectors,
)
from songfeel.baselines.mecomp import (
    MECOMP_DIM,
    MECOMP_MODEL_SHA256,
    MECOMP_MODEL_URL,
    MecompModel,
    MecompModelHashError,
    fetch_mecomp_model,
    find_mecomp_model,
    mecomp_columns,
    mecomp_embeddings,
)
from songfeel.baselines.mfcc import Standardiser, mfcc_statistics
from songfeel.datasets.download import ChecksumError, read_stamp
from songfeel.store import FeatureStore
from tests.fma_server import FileServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def three_tracks(demo_manifest) -> dict[str, str]:
    """Three real demo tracks of different moods: track id -> path."""
    rows = demo_manifest.groupby("mood").head(1).head(3)
    return dict(zip(rows["track_id"], rows["path"]))


@pytest.fixture
def broken(tmp_path) -> Path:
    path = tmp_path / "broken.ogg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


# --- MFCC statistics -----------------------------------------------------------------------------


def test_mfcc_statistics_are_the_mean_and_std_over_frames(small_store):
    path, rows = small_store
    ids = rows["track_id"].tolist()[::-1]
    with FeatureStore(path) as store:
        stats = mfcc_statistics(store, ids)
        n_mfcc = store.config.n_mfcc
        assert stats.shape == (len(ids), 2 * n_mfcc)
        for row, track_id in zip(stats, ids):
            frames = store.mfcc(track_id).astype(np.float64)
            np.testing.assert_allclose(row[:n_mfcc], frames.mean(axis=0), rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(row[n_mfcc:], frames.std(axis=0), rtol=1e-10, atol=1e-9)
        assert (stats[:, n_mfcc:] > 0).all()  # real music varies over time
        assert mfcc_statistics(store, []).shape == (0, 2 * n_mfcc)
        with pytest.raises(KeyError, match="demo:no-such-track"):
            mfcc_statistics(store, ["demo:no-such-track"])


def test_standardiser_z_scores_with_training_statistics(small_store):
    path, rows = small_store
    with FeatureStore(path) as store:
        train = mfcc_statistics(store, rows[rows["split"] == "train"]["track_id"].tolist())
        test = mfcc_statistics(store, rows[rows["split"] != "train"]["track_id"].tolist())
    scaler = Standardiser()
    scaled = scaler.fit_transform(train)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, rtol=1e-9)
    # Other tracks are scaled with the training statistics, not their own.
    np.testing.assert_allclose(scaler.transform(test), (test - train.mean(axis=0)) / train.std(axis=0))


def test_standardiser_floors_the_std_of_constant_features():
    features = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    scaler = Standardiser(min_std=1e-3).fit(features)
    assert scaler.scale_[1] == 1e-3
    out = scaler.transform(np.array([[3.0, 5.0], [3.0, 5.002]]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.0, 2.0]], atol=1e-9)
    with pytest.raises(RuntimeError, match="before fit"):
        Standardiser().transform(features)
    with pytest.raises(ValueError, match="expected"):
        scaler.transform(np.ones((2, 3)))


# --- bliss-rs ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bliss_runs")
def test_bliss_gives_23_bounded_features_per_track(three_tracks):
    features, skipped = bliss_features(three_tracks)
    assert skipped.empty and list(skipped.columns) == ["track_id", "path", "error"]
    assert list(features.index) == list(three_tracks) and features.index.name == "track_id"
    assert list(features.columns) == list(BLISS_FEATURES) and len(BLISS_FEATURES) == 23
    values = features.to_numpy()
    assert np.isfinite(values).all()
    # bliss normalises every feature to [-1, 1].
    assert (np.abs(values) <= 1.0).all()
    # Different songs, different features; the same song, the same features (columns follow bliss's own order).
    assert np.abs(values[0] - values[1]).max() > 0.05
    import bliss_audio

    first_id, first_path = next(iter(three_tracks.items()))
    np.testing.assert_array_equal(features.loc[first_id].to_numpy(), bliss_audio.Song(first_path).analysis)


@pytest.mark.usefixtures("bliss_runs")
def test_a_file_bliss_cannot_open_is_skipped_with_its_cause(three_tracks, broken, caplog):
    paths = {**dict(list(three_tracks.items())[:2]), "broken": str(broken), "gone": str(broken.with_name("gone.ogg"))}
    features, skipped = bliss_features(paths)
    assert list(features.index) == list(three_tracks)[:2]
    assert skipped["track_id"].tolist() == ["broken", "gone"]
    assert skipped["path"].tolist() == [str(broken), str(broken.with_name("gone.ogg"))]
    cause = skipped.loc[0, "error"]
    assert "PanicException" in cause and "DecodingError" in cause
    assert skipped.loc[1, "error"] == "file not found"
    assert str(broken) in caplog.text


@pytest.mark.usefixtures("bliss_runs")
def test_bliss_in_parallel_matches_one_process(three_tracks, broken):
    paths = {**three_tracks, "broken": str(broken)}
    serial, serial_skipped = bliss_features(paths, n_jobs=1)
    parallel, parallel_skipped = bliss_features(paths, n_jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)
    pd.testing.assert_frame_equal(serial_skipped, parallel_skipped)


@pytest.mark.usefixtures("bliss_runs")
def test_bliss_cache_skips_unchanged_files(three_tracks, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "bliss.csv"
    first, _ = bliss_features(three_tracks, cache_path=cache)
    assert cache.is_file() and len(pd.read_csv(cache)) == 3

    def fail(track_id, path):
        raise AssertionError(f"{path} analysed again")

    monkeypatch.setattr(bliss, "bliss_analyse", fail)
    again, skipped = bliss_features(three_tracks, cache_path=cache)
    assert skipped.empty
    pd.testing.assert_frame_equal(again, first)  # exact: the CSV round-trips floats

    # A file whose mtime changed is analysed again; the others still come from the cache.
    copy = tmp_path / "copy.opus"
    first_id, first_path = next(iter(three_tracks.items()))
    copy.write_bytes(Path(first_path).read_bytes())
    record = tmp_path / "analysed.txt"  # bliss runs in worker processes: they log what they analyse to a file
    values = dict(zip(BLISS_FEATURES, first.loc[first_id].tolist()))

    def recorded(track_id, path):
        with open(record, "a") as out:
            out.write(path + "\n")
        return {"track_id": track_id, "path": path, "error": "", "features": values}

    monkeypatch.setattr(bliss, "bliss_analyse", recorded)
    bliss_features({"copy": str(copy)}, cache_path=cache)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    bliss_features({"copy": str(copy), **three_tracks}, cache_path=cache)
    assert record.read_text().splitlines() == [str(copy), str(copy)]
    assert len(pd.read_csv(cache)) == 4


# --- MECOMP --------------------------------------------------------------------------------------


def test_mecomp_model_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        MecompModel(missing)
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        mecomp_embeddings({}, missing)


def test_mecomp_embeddings_are_unit_norm_and_deterministic(mecomp_onnx, three_tracks, broken):
    two = dict(list(three_tracks.items())[:2])
    embeddings, skipped = mecomp_embeddings({**two, "broken": str(broken)}, mecomp_onnx, intra_op_threads=2)
    assert list(embeddings.index) == list(two) and list(embeddings.columns) == mecomp_columns()
    assert embeddings.shape == (2, MECOMP_DIM) and (embeddings.dtypes == np.float32).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings.to_numpy(), axis=1), 1.0, atol=1e-5)
    # Different songs differ (unit vectors: distance up to 2).
    assert np.linalg.norm(embeddings.iloc[0] - embeddings.iloc[1]) > 0.05
    assert skipped["track_id"].tolist() == ["broken"] and skipped.loc[0, "path"] == str(broken)
    assert skipped.loc[0, "error"].startswith("AudioDecodeError: cannot decode")

    # The same song embedded twice, by the same or a new session, is identical.
    model = MecompModel(mecomp_onnx, intra_op_threads=2)
    first_id, first_path = next(iter(two.items()))
    samples = load_audio(first_path)
    once = model.embed(samples)
    assert once.shape == (MECOMP_DIM,) and once.dtype == np.float32
    np.testing.assert_array_equal(once, model.embed(samples))
    np.testing.assert_array_equal(once, embeddings.loc[first_id].to_numpy())


def test_mecomp_embed_refuses_what_would_crash_the_runtime(mecomp_onnx):
    model = MecompModel(mecomp_onnx, intra_op_threads=1)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="2048 samples"):
        model.embed(rng.standard_normal(2047).astype(np.float32))
    with pytest.raises(ValueError, match="mono"):
        model.embed(rng.standard_normal((2, 4096)).astype(np.float32))
    assert model.embed(rng.standard_normal(2048) * 0.1).shape == (MECOMP_DIM,)


def test_mecomp_can_decode_like_mecomp(mecomp_onnx, three_tracks):
    one = dict(list(three_tracks.items())[:1])
    ours, _ = mecomp_embeddings(one, mecomp_onnx, intra_op_threads=1)
    theirs, _ = mecomp_embeddings(one, mecomp_onnx, intra_op_threads=1, like_mecomp=True)
    # The demo tracks are 48 kHz stereo: MECOMP's downmix is 3 dB louder and its resampler differs.
    difference = float(np.linalg.norm(ours.to_numpy() - theirs.to_numpy()))
    assert 0.0 < difference < 1.0


# --- bliss, equal weight per feature group ---------------------------------------------------------


def group_of(name: str) -> str:
    """The bliss-rs module that computes a feature, written out independently of BLISS_FEATURE_GROUPS."""
    if name == "tempo":
        return "tempo"
    if name == "zcr" or "spectral" in name:
        return "timbre"
    if name.endswith("loudness"):
        return "loudness"
    assert name.startswith("chroma"), name
    return "chroma"


@pytest.fixture(scope="module")
def bliss_table(bliss_runs, three_tracks) -> pd.DataFrame:
    features, skipped = bliss_features(three_tracks)
    assert skipped.empty
    return features


def test_group_weighted_distance_matches_a_brute_force_on_real_songs(bliss_table):
    vectors = bliss_group_weighted_vectors(bliss_table)
    assert list(vectors.index) == list(bliss_table.index) and list(vectors.columns) == list(BLISS_FEATURES)
    sizes = {g: sum(group_of(n) == g for n in BLISS_FEATURES) for g in ("tempo", "timbre", "loudness", "chroma")}
    assert sizes == {"tempo": 1, "timbre": 7, "loudness": 2, "chroma": 13}
    assert {g: len(names) for g, names in BLISS_FEATURE_GROUPS.items()} == sizes
    weights = bliss_feature_weights()
    ours = pdist(vectors.to_numpy())
    for k, (i, j) in enumerate(itertools.combinations(range(len(bliss_table)), 2)):
        a, b = bliss_table.iloc[i], bliss_table.iloc[j]
        # Each group contributes the mean of its squared feature differences: the groups weigh the same.
        brute = np.sqrt(sum(np.mean([(a[n] - b[n]) ** 2 for n in BLISS_FEATURES if group_of(n) == g]) for g in sizes))
        assert ours[k] == pytest.approx(brute, rel=1e-12)
        # ... which is bliss-rs's mahalanobis_distance(a, b, M) = sqrt((a-b)^T M (a-b)) with M = diag(w).
        assert ours[k] == pytest.approx(mahalanobis(a, b, np.diag(weights)), rel=1e-12)
    assert (ours > 0).all()


def test_group_weights_reweight_groups(bliss_table):
    # Group weights equal to the group sizes give every feature weight 1: bliss's own Euclidean distance.
    sizes = {g: len(names) for g, names in BLISS_FEATURE_GROUPS.items()}
    pd.testing.assert_frame_equal(bliss_group_weighted_vectors(bliss_table, sizes), bliss_table.astype(np.float64))
    # A weight of 0 drops a group; a group left out keeps weight 1.
    no_chroma = pdist(bliss_group_weighted_vectors(bliss_table, {"chroma": 0.0}).to_numpy())
    a, b = bliss_table.iloc[0], bliss_table.iloc[1]
    brute = np.sqrt(sum(np.mean([(a[n] - b[n]) ** 2 for n in BLISS_FEATURES if group_of(n) == g])
                        for g in ("tempo", "timbre", "loudness")))
    assert no_chroma[0] == pytest.approx(brute, rel=1e-12)
    # Column order in, bliss's order out.
    shuffled = bliss_table[list(BLISS_FEATURES)[::-1]]
    pd.testing.assert_frame_equal(bliss_group_weighted_vectors(shuffled), bliss_group_weighted_vectors(bliss_table))


def test_group_weights_refuse_bad_input(bliss_table):
    with pytest.raises(ValueError, match="chroma13"):
        bliss_group_weighted_vectors(bliss_table.drop(columns="chroma13"))
    with pytest.raises(ValueError, match="rhythm"):
        bliss_feature_weights({"rhythm": 1.0})
    with pytest.raises(ValueError, match="tempo"):
        bliss_feature_weights({"tempo": -1.0})


# --- fetching MECOMP's model ------------------------------------------------------------------------


@pytest.fixture
def served_model(tmp_path):
    """A model-sized file served on 127.0.0.1 at models/audio_embedding_model.onnx: (server, url, bytes, sha256)."""
    www = tmp_path / "www"
    (www / "models").mkdir(parents=True)
    data = np.random.default_rng(1).bytes(200_000)
    (www / "models/audio_embedding_model.onnx").write_bytes(data)
    with FileServer(www) as server:
        yield server, server.url + "models/audio_embedding_model.onnx", data, hashlib.sha256(data).hexdigest()


def test_fetch_downloads_and_verifies_a_missing_model(tmp_path, served_model):
    server, url, data, sha256 = served_model
    dest = tmp_path / "baselines" / "mecomp.onnx"
    assert fetch_mecomp_model(dest, url=url, sha256=sha256) == dest
    assert dest.read_bytes() == data and read_stamp(dest, "sha256") == sha256
    assert not dest.with_name("mecomp.onnx.part").exists()
    assert server.n_requests == 1


def test_fetch_refuses_served_bytes_with_another_hash(tmp_path, served_model):
    server, url, data, sha256 = served_model
    dest = tmp_path / "mecomp.onnx"
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match="SHA-256 mismatch") as info:
        fetch_mecomp_model(dest, url=url, sha256=wrong, retries=0)
    assert (info.value.expected, info.value.actual, info.value.algorithm) == (wrong, sha256, "sha256")
    assert not dest.exists() and not dest.with_name("mecomp.onnx.part").exists()
    assert server.n_requests == 1


def test_fetch_keeps_a_present_good_model_without_a_request(tmp_path, served_model):
    server, url, data, sha256 = served_model
    dest = tmp_path / "mecomp.onnx"
    dest.write_bytes(data)
    assert fetch_mecomp_model(dest, url=url, sha256=sha256) == dest
    assert server.n_requests == 0 and dest.read_bytes() == data


def test_fetch_raises_on_a_present_wrong_file_and_keeps_it(tmp_path, served_model):
    server, url, data, sha256 = served_model
    dest = tmp_path / "mecomp.onnx"
    mine = b"my own model, not MECOMP's"
    dest.write_bytes(mine)
    with pytest.raises(MecompModelHashError) as info:
        fetch_mecomp_model(dest, url=url, sha256=sha256)
    message = str(info.value)
    assert str(dest) in message and sha256 in message and hashlib.sha256(mine).hexdigest() in message
    assert dest.read_bytes() == mine  # a user's file is never deleted
    assert server.n_requests == 0
    with pytest.raises(ValueError, match="64 hex digits"):
        fetch_mecomp_model(tmp_path / "other.onnx", url=url, sha256="abc")


def test_the_default_source_is_mecomp_nextgen_analysis_at_6c7dfe9():
    assert MECOMP_MODEL_URL.startswith(
        "https://raw.githubusercontent.com/AnthonyMichaelTDM/mecomp-nextgen-analysis/6c7dfe9")
    assert MECOMP_MODEL_URL.endswith("/models/audio_embedding_model.onnx")
    mecomp = OmegaConf.load(REPO / "conf/mecomp/default.yaml")
    assert mecomp.url == MECOMP_MODEL_URL and mecomp.sha256 == MECOMP_MODEL_SHA256
    assert mecomp.fetch is True


def test_find_mecomp_model_takes_the_configured_file_else_leaves_it_out(tmp_path, mecomp_onnx):
    assert find_mecomp_model({"onnx": str(mecomp_onnx), "fetch": False}) == mecomp_onnx
    missing = {"onnx": str(tmp_path / "nowhere.onnx"), "fetch": False, "download": str(tmp_path / "m.onnx")}
    assert find_mecomp_model(missing) is None
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not MECOMP's model")
    with pytest.raises(MecompModelHashError):  # a file that is not MECOMP's model is an error, and kept
        find_mecomp_model({**missing, "fetch": True, "download": str(wrong), "url": MECOMP_MODEL_URL,
                           "sha256": MECOMP_MODEL_SHA256})
    assert wrong.read_bytes() == b"not MECOMP's model"


def test_fetched_real_model_runs(tmp_path, mecomp_onnx, three_tracks):
    """MECOMP's real model, served on loopback with the published SHA-256, is fetched and runs."""
    www = tmp_path / "www"
    (www / "models").mkdir(parents=True)
    (www / "models/audio_embedding_model.onnx").write_bytes(mecomp_onnx.read_bytes())
    dest = tmp_path / "mecomp_audio_embedding_model.onnx"
    with FileServer(www) as server:
        fetch_mecomp_model(dest, url=server.url + "models/audio_embedding_model.onnx")  # the default SHA-256
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == MECOMP_MODEL_SHA256
    path = next(iter(three_tracks.values()))
    np.testing.assert_array_equal(MecompModel(dest, 1).embed(load_audio(path)),
                                  MecompModel(mecomp_onnx, 1).embed(load_audio(path)))
