"""`python -m songfeel.similar`: a folder of real demo songs embedded with an ONNX model of MECOMP's contract."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from songfeel import similar
from songfeel.audio import load_audio_like_mecomp


@pytest.fixture
def library(tmp_path, demo_paths):
    """Five real demo songs in two sub-folders, and a corrupt file."""
    folder = tmp_path / "Music"
    for i, path in enumerate(demo_paths[:5]):
        target = folder / ("calm" if i < 2 else "other") / f"{i}_{path.split('/')[-1]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (folder / "broken.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return folder


def test_a_library_is_embedded_as_mecomp_would_cached_and_queried(library, mecomp_onnx, tmp_path, monkeypatch):
    out = tmp_path / "out" / "embeddings.csv"
    args = [str(library), "--model", str(mecomp_onnx), "--out", str(out), "--jobs", "2", "--query", "0_",
            "--k", "3", "--map", str(tmp_path / "map.png"), "--colour-by", "folder"]
    assert similar.main(args) == 0
    table = pd.read_csv(out, index_col="path")
    assert len(table) == 5 and [c for c in table.columns if c.startswith("e_")] == [f"e_{i:02d}" for i in range(32)]
    skipped = pd.read_csv(tmp_path / "out" / "embeddings_skipped.csv")
    assert skipped["path"].str.endswith("broken.mp3").tolist() == [True]
    # The embedding is the model's output on the whole song, decoded as MECOMP does.
    first = table.index[0]
    session = ort.InferenceSession(str(mecomp_onnx), providers=["CPUExecutionProvider"])
    expected = session.run(["embedding"], {"audio": load_audio_like_mecomp(first)[None, :]})[0][0]
    np.testing.assert_allclose(table.loc[first, [f"e_{i:02d}" for i in range(32)]].to_numpy(float), expected, atol=1e-5)
    # Neighbours: the 3 nearest others by cosine, best first, never the query itself.
    neighbours = pd.read_csv(tmp_path / "out" / "embeddings_neighbours.csv")
    assert len(neighbours) == 3 and neighbours["cosine"].is_monotonic_decreasing
    assert not neighbours["path"].str.contains("/0_").any()
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    # A rerun reuses the cache: nothing is embedded again.
    monkeypatch.setattr(similar, "embed_file", lambda *a: pytest.fail("embedded again"))
    again, _, summary = similar.embed_library(sorted(library.rglob("*.opus")), mecomp_onnx,
                                              library / ".songfeel_similar.npz", n_jobs=1)
    assert summary["cached"] == 5 and summary["embedded"] == 0
    pd.testing.assert_frame_equal(again.astype(np.float64).reset_index(drop=True),
                                  table.loc[again.index, again.columns].astype(np.float64).reset_index(drop=True),
                                  atol=1e-6)


def test_nearest_ranks_by_cosine_and_refuses_an_unknown_song():
    vectors = pd.DataFrame([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]], index=["a", "b", "c", "d"])
    assert similar.nearest(vectors, "a", k=3)["path"].tolist() == ["c", "b", "d"]
    with pytest.raises(KeyError, match="zzz"):
        similar.nearest(vectors, "zzz")
