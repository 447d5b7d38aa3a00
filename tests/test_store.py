import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, store_options

from songfeel.audio import load_audio
from songfeel.features import FEATURE_VERSION, log_mel, mfcc
from songfeel.store import FeatureStore, parts_dir, write_store


def test_store_holds_the_features_of_real_tracks(small_store, feature_config):
    path, rows = small_store
    with FeatureStore(path) as store:
        assert store.track_ids == sorted(rows["track_id"])
        assert store.config == feature_config
        track_id, audio_path = rows.iloc[0]["track_id"], rows.iloc[0]["path"]
        expected = log_mel(load_audio(audio_path), feature_config)
        assert store.n_frames(track_id) == expected.shape[0]
        np.testing.assert_allclose(store.logmel(track_id), expected, atol=1e-4)
        np.testing.assert_allclose(store.mfcc(track_id), mfcc(expected, feature_config), atol=1e-3)
        np.testing.assert_array_equal(store.logmel(track_id, 100, 143), store.logmel(track_id)[100:143])
        attrs = store.attrs(track_id)
        assert attrs["path"] == audio_path and len(attrs["source_sha1"]) == 40
        assert attrs["n_samples"] == len(load_audio(audio_path))
    with h5py.File(path) as h5:
        assert h5.attrs["feature_version"] == FEATURE_VERSION
        assert h5.attrs["sample_rate"] == 22050 and h5.attrs["hop_length"] == feature_config.hop_length
        dataset = h5["tracks"][track_id]["logmel"]
        assert dataset.compression == "lzf" and dataset.chunks == (256, feature_config.n_mels)
    assert not any(parts_dir(path).iterdir())


def test_rerun_is_a_no_op_and_changes_are_incremental(tmp_path, demo_manifest, feature_config):
    rows = demo_manifest.head(3).copy()
    out = tmp_path / "f.h5"
    _, first = write_store(rows, out, feature_config, **store_options(n_jobs=1))
    assert first["computed"] == 3 and first["rewritten"]
    mtime = out.stat().st_mtime_ns
    _, again = write_store(rows, out, feature_config, **store_options(n_jobs=1))
    assert again == {**again, "kept": 3, "computed": 0, "resumed": 0, "rewritten": False}
    assert out.stat().st_mtime_ns == mtime
    # a new track is computed alone; a removed one leaves the store
    more = demo_manifest.iloc[1:4]
    _, changed = write_store(more, out, feature_config, **store_options(n_jobs=1))
    assert (changed["kept"], changed["computed"], changed["removed"]) == (2, 1, 1)
    with FeatureStore(out) as store:
        assert store.track_ids == sorted(more["track_id"])
    # a different feature config recomputes everything
    _, other = write_store(more, out, feature_config.__class__(**{**feature_config.to_dict(), "n_mels": 32}),
                           **store_options(n_jobs=1))
    assert other["computed"] == 3 and other["kept"] == 0


def test_float16_storage_reads_back_as_float32(tmp_path, demo_manifest, feature_config):
    out = tmp_path / "f16.h5"
    write_store(demo_manifest.head(1), out, feature_config, **store_options(n_jobs=1, dtype="float16"))
    with FeatureStore(out) as store:
        frames = store.logmel(demo_manifest.iloc[0]["track_id"])
        assert frames.dtype == np.float32 and store.dtype == "float16"
        expected = log_mel(load_audio(demo_manifest.iloc[0]["path"]), feature_config)
        np.testing.assert_allclose(frames, expected, atol=0.1)
    with pytest.raises(ValueError, match="unknown dtype"):
        write_store(demo_manifest.head(1), out, feature_config, **store_options(n_jobs=1, dtype="int8"))


def test_bad_tracks_are_reported_and_the_rest_goes_on(tmp_path, demo_manifest, feature_config):
    rows = demo_manifest.head(2).copy()
    corrupt = tmp_path / "corrupt.opus"
    corrupt.write_bytes(b"OggS" + bytes(500))
    bad = rows.iloc[:1].copy()
    bad["track_id"], bad["path"] = "demo:corrupt", str(corrupt)
    missing = rows.iloc[:1].copy()
    missing["track_id"], missing["path"] = "demo:missing", str(tmp_path / "missing.opus")
    skipped, summary = write_store(pd.concat([rows, bad, missing]), tmp_path / "f.h5", feature_config,
                                   **store_options(n_jobs=1))
    assert sorted(skipped["track_id"]) == ["demo:corrupt", "demo:missing"]
    assert skipped.set_index("track_id").loc["demo:corrupt", "path"] == str(corrupt)
    assert "AudioDecodeError" in skipped.set_index("track_id").loc["demo:corrupt", "error"]
    assert summary["skipped"] == 2
    with FeatureStore(tmp_path / "f.h5") as store:
        assert store.track_ids == sorted(rows["track_id"])
    assert not (tmp_path / "f.h5.tmp").exists()


KILLED_RUN = """
import pathlib, sys, pandas as pd
from omegaconf import OmegaConf
import songfeel
from songfeel.features import FeatureConfig
from songfeel.store import write_store
CONF = pathlib.Path(songfeel.__file__).parents[1] / "conf/features/logmel.yaml"
rows = pd.read_csv(sys.argv[1])
conf = OmegaConf.load(CONF)
write_store(rows, sys.argv[2], FeatureConfig.from_mapping(conf), n_jobs=1, min_seconds=conf.min_seconds,
            dtype=conf.dtype, backend=conf.backend, dask_address=conf.dask_address)
"""


def test_a_killed_run_keeps_the_store_and_resumes_its_parts(tmp_path, demo_manifest, feature_config):
    out = tmp_path / "f.h5"
    write_store(demo_manifest.head(2), out, feature_config, **store_options(n_jobs=1))
    rows = demo_manifest.head(10)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "rows.csv"), str(out)], env=env)
    parts = parts_dir(out)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.h5"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(parts.glob("*.h5")))
    assert 3 <= finished < 8, "the run was not killed part-way"
    with FeatureStore(out) as store:  # the previous store still opens, unchanged
        assert store.track_ids == sorted(demo_manifest.head(2)["track_id"])
    _, summary = write_store(rows, out, feature_config, **store_options(n_jobs=1))
    assert summary["kept"] == 2 and summary["resumed"] == finished
    assert summary["computed"] == 10 - 2 - finished
    with FeatureStore(out) as store:
        assert store.track_ids == sorted(rows["track_id"])
        last = rows.iloc[-1]
        np.testing.assert_allclose(store.logmel(last["track_id"]),
                                   log_mel(load_audio(last["path"]), feature_config), atol=1e-4)
    assert not list(parts.iterdir())


def test_dask_backend_on_a_local_cluster(tmp_path, demo_manifest, feature_config):
    rows = demo_manifest.head(3)
    skipped, summary = write_store(rows, tmp_path / "dask.h5", feature_config,
                                   **store_options(n_jobs=2, backend="dask"))
    assert skipped.empty and summary["computed"] == 3
    write_store(rows, tmp_path / "loky.h5", feature_config, **store_options(n_jobs=2))
    with FeatureStore(tmp_path / "dask.h5") as a, FeatureStore(tmp_path / "loky.h5") as b:
        assert a.track_ids == b.track_ids
        for track_id in a.track_ids:
            np.testing.assert_allclose(a.logmel(track_id), b.logmel(track_id), atol=1e-4)


def test_missing_store_names_stage_02(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 02"):
        FeatureStore(tmp_path / "none.h5")


KILLED_WORKER_RUN = """
import pathlib, sys, pandas as pd
from omegaconf import OmegaConf
import songfeel
from songfeel.features import FeatureConfig
from songfeel.store import FeatureStoreError, write_store
CONF = pathlib.Path(songfeel.__file__).parents[1] / "conf/features/logmel.yaml"
rows = pd.read_csv(sys.argv[1])
try:
    conf = OmegaConf.load(CONF)
    write_store(rows, sys.argv[2], FeatureConfig.from_mapping(conf), n_jobs=2, min_seconds=conf.min_seconds,
                dtype=conf.dtype, backend=conf.backend, dask_address=conf.dask_address)
except FeatureStoreError as exc:
    print(exc, flush=True)
    sys.exit(3)
"""


def test_a_killed_worker_stops_the_run_cleanly_and_the_rerun_resumes(tmp_path, demo_manifest, feature_config):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "f.h5"
    rows = demo_manifest.head(12)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_WORKER_RUN, str(tmp_path / "rows.csv"), str(out)],
                               env=env, stdout=subprocess.PIPE, text=True)
    parts = parts_dir(out)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.h5"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [p for p in psutil.Process(process.pid).children(recursive=True)
               if "popen_loky" in " ".join(p.cmdline())]  # loky's workers, not its resource tracker
    assert workers, "no loky worker found"
    workers[0].kill()
    stdout, _ = process.communicate(timeout=120)
    finished = len(list(parts.glob("*.h5")))
    assert process.returncode == 3 and "a worker died" in stdout and str(parts) in stdout
    assert 2 <= finished < 12 and not out.exists()
    _, summary = write_store(rows, out, feature_config, **store_options(n_jobs=1))
    assert summary["resumed"] == finished and summary["computed"] == 12 - finished
    with FeatureStore(out) as store:
        assert store.track_ids == sorted(rows["track_id"])
