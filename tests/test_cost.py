"""Embedding cost on real demo tracks: a tiny random-init songfeel model, MECOMP's model, bliss and MFCC."""

from __future__ import annotations

import os
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import logmel_config

from songfeel.datasets.demo import tracks_dir
from songfeel.errors import AudioDecodeError
from songfeel.export import cost
from songfeel.export.cost import COST_COLUMNS, embedding_cost, onnx_parameter_count
from songfeel.models.embedder import AudioEmbedder, build_embedder, parameter_count
from songfeel.models.frontend import LogMelFrontend

SAMPLE_RATE = 22050
TINY = {
    "window": {"window_seconds": 1.0, "hop_seconds": 1.0},
    "model": {"encoder_channels": [4, 8], "embedding_dim": 32},
    "head": {"_target_": "songfeel.models.heads.GRUHead", "hidden_size": 8, "num_layers": 1},
}


@pytest.fixture(scope="module")
def paths() -> dict[str, Path]:
    """Three real demo tracks of different moods: key -> file."""
    files = [sorted((tracks_dir() / mood).glob("*.opus"))[0] for mood in ("calm", "energetic", "tender")]
    return {f.stem: f for f in files}


@pytest.fixture(scope="module")
def audio(paths) -> dict[str, np.ndarray]:
    """The tracks decoded with librosa, mono at 22050 Hz."""
    return {key: librosa.load(path, sr=SAMPLE_RATE, mono=True)[0] for key, path in paths.items()}


@pytest.fixture
def tiny() -> AudioEmbedder:
    """A random-init songfeel model: raw audio -> log-mel -> small CNN + GRU -> 32-d."""
    torch.manual_seed(0)
    features = logmel_config()
    return AudioEmbedder(LogMelFrontend(features), build_embedder(TINY, features)).eval()


@pytest.fixture
def two_torch_threads():
    """Run with 2 torch threads, so that a leaked set_num_threads(1) shows; restore the old value."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def check_speeds(table: pd.DataFrame, audio: dict[str, np.ndarray], repeats: int = 1) -> None:
    assert list(table.columns) == list(COST_COLUMNS)
    total = repeats * sum(len(x) for x in audio.values()) / SAMPLE_RATE
    np.testing.assert_array_equal(table["audio_seconds"], total)
    np.testing.assert_array_equal(table["x_real_time"], table["audio_seconds"] / table["seconds"])
    assert np.isfinite(table["seconds"]).all() and (table["seconds"] > 0).all()
    assert np.isfinite(table["x_real_time"]).all() and (table["x_real_time"] > 0).all()


@pytest.mark.usefixtures("bliss_runs")
def test_cost_of_a_tiny_model_bliss_and_mfcc_without_mecomp(tiny, audio, paths, two_torch_threads):
    tiny.train()  # the run puts it in eval mode and gives its mode back
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    table = embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, mecomp_onnx=None, bliss_paths=paths,
                           features=logmel_config())
    assert torch.get_num_threads() == two_torch_threads
    assert affinity is None or os.sched_getaffinity(0) == affinity
    assert tiny.training

    check_speeds(table, audio)
    assert table["method"].tolist() == ["tiny", "bliss", "mfcc"]
    assert table["kind"].tolist() == ["variant", "baseline", "baseline"]
    assert table["ratio_vs_mecomp"].isna().all()  # no MECOMP in this run
    row = table.set_index("method").loc["tiny"]
    assert row["n_parameters"] == parameter_count(tiny) > 0
    assert row["size_bytes_fp32"] == 4 * row["n_parameters"]
    # The export holds the front end's Fourier and mel bases besides the weights.
    assert row["onnx_bytes"] > row["size_bytes_fp32"]
    assert table.set_index("method").loc[["bliss", "mfcc"], ["n_parameters", "size_bytes_fp32", "onnx_bytes"]] \
        .isna().all().all()


def test_mecomp_row_is_the_reference(tiny, audio, mecomp_onnx, two_torch_threads):
    table = embedding_cost({"tiny": tiny, "random-init": tiny}, audio, SAMPLE_RATE, mecomp_onnx=mecomp_onnx,
                           repeats=2, mfcc=False, kinds={"random-init": "baseline"}, export=False)
    assert torch.get_num_threads() == two_torch_threads
    check_speeds(table, audio, repeats=2)
    assert table["method"].tolist() == ["tiny", "random-init", "mecomp"]
    assert table["kind"].tolist() == ["variant", "baseline", "baseline"]
    rows = table.set_index("method")
    assert rows.loc["mecomp", "ratio_vs_mecomp"] == 1.0
    np.testing.assert_allclose(rows["ratio_vs_mecomp"], rows["x_real_time"] / rows.loc["mecomp", "x_real_time"])
    assert rows.loc["mecomp", "n_parameters"] == onnx_parameter_count(mecomp_onnx) == 213_223  # "about 213 k"
    assert rows.loc["mecomp", "size_bytes_fp32"] == 4 * 213_223
    assert rows.loc["mecomp", "onnx_bytes"] == mecomp_onnx.stat().st_size
    assert rows.loc[["tiny", "random-init"], "onnx_bytes"].isna().all()  # export=False


def test_exported_onnx_files_are_timed_beside_mecomp(tiny, audio, mecomp_onnx, tmp_path):
    from songfeel.export.onnx import export_onnx

    path = tmp_path / "tiny.onnx"
    export_onnx(tiny, path)
    table = embedding_cost({}, audio, SAMPLE_RATE, mecomp_onnx=mecomp_onnx, mfcc=False, export=False,
                           onnx_models={"tiny.onnx": path})
    check_speeds(table, audio)
    rows = table.set_index("method")
    assert table["method"].tolist() == ["tiny.onnx", "mecomp"] and rows.loc["tiny.onnx", "kind"] == "onnx"
    assert rows.loc["tiny.onnx", "onnx_bytes"] == path.stat().st_size
    assert rows.loc["tiny.onnx", "n_parameters"] == onnx_parameter_count(path)
    np.testing.assert_allclose(rows.loc["tiny.onnx", "ratio_vs_mecomp"],
                               rows.loc["tiny.onnx", "x_real_time"] / rows.loc["mecomp", "x_real_time"])
    with pytest.raises(ValueError, match="reserved"):
        embedding_cost({}, audio, SAMPLE_RATE, onnx_models={"mecomp": path})


def test_every_method_is_warmed_up_and_interleaved(audio):
    calls = []
    runners = {name: (lambda key, name=name: calls.append((name, key))) for name in ("a", "b", "c")}
    seconds = cost._time_interleaved(runners, list(audio), repeats=1)
    first = next(iter(audio))
    assert calls[:3] == [("a", first), ("b", first), ("c", first)]  # one untimed warm-up each
    timed = calls[3:]
    assert len(timed) == 3 * len(audio)
    # Each song goes through every method before the next song; who goes first rotates.
    for i, key in enumerate(audio):
        step = timed[3 * i : 3 * i + 3]
        assert {k for _, k in step} == {key} and {n for n, _ in step} == {"a", "b", "c"}
    assert [timed[3 * i][0] for i in range(len(audio))] == ["a", "b", "c"][: len(audio)]
    assert set(seconds) == {"a", "b", "c"} and all(s >= 0 for s in seconds.values())


@pytest.mark.usefixtures("bliss_runs")
def test_threads_are_restored_when_a_method_fails(tiny, audio, paths, tmp_path, two_torch_threads):
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    bad = {**{k: str(p) for k, p in paths.items()}, next(iter(paths)): str(broken)}
    with pytest.raises(AudioDecodeError, match="broken.ogg"):
        embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, bliss_paths=bad, mfcc=False, export=False)
    assert torch.get_num_threads() == two_torch_threads


def test_bad_arguments_are_refused(tiny, audio, paths, tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        embedding_cost({"mecomp": tiny}, audio, SAMPLE_RATE)
    with pytest.raises(ValueError, match="22050"):
        embedding_cost({"tiny": tiny}, audio, 44100)
    with pytest.raises(ValueError, match="'short'"):
        embedding_cost({"tiny": tiny}, {"short": np.zeros(1000, np.float32)}, SAMPLE_RATE)
    with pytest.raises(ValueError, match="mono"):
        embedding_cost({"tiny": tiny}, {"stereo": np.zeros((2, 40_000), np.float32)}, SAMPLE_RATE)
    with pytest.raises(ValueError, match="conf/features"):  # the MFCC baseline's parameters come from conf
        embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, export=False)
    with pytest.raises(ValueError, match="keys of audio"):
        embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, bliss_paths=dict(list(paths.items())[:1]))
    with pytest.raises(ValueError, match="repeats"):
        embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, repeats=0)
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        embedding_cost({"tiny": tiny}, audio, SAMPLE_RATE, mecomp_onnx=tmp_path / "nowhere.onnx", export=False,
                       mfcc=False)
