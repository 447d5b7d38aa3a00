import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_models import model_cfg

from songfeel.audio import load_audio
from songfeel.errors import ExportParityError
from songfeel.export.onnx import build_audio_model, check_parity, export_onnx
from songfeel.export.winner import select_winner
from songfeel.models.embedder import AudioEmbedder, build_embedder
from songfeel.models.frontend import LogMelFrontend


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, feature_config):
    torch.manual_seed(1)
    cfg = model_cfg("sliding", "gru")
    model = build_embedder(cfg, feature_config)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"state_dict": model.state_dict(), "config": {k: dict(v) for k, v in cfg.items()},
                "features": feature_config.to_dict(), "variant": "sliding-gru", "epoch": 1,
                "val_triplet_accuracy": 0.5}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint):
    model = build_audio_model(checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, opset=17)
    return model, path


def test_onnx_follows_mecomps_contract(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["audio"] and [o.name for o in graph.output] == ["embedding"]
    audio_type = graph.input[0].type.tensor_type
    assert audio_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param for d in audio_type.shape.dim] == ["batch", "n_samples"]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 32
    assert onnx.load(str(path)).opset_import[0].version >= 17


def constant_bytes(path) -> dict[str, int]:
    """Bytes of every tensor stored in an ONNX file: initializers and Constant nodes."""
    graph = onnx.load(str(path)).graph
    tensors = {t.name: t for t in graph.initializer}
    tensors.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.t.dims})
    return {name: int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            for name, t in tensors.items()}


def test_onnx_file_is_under_a_megabyte_with_no_dense_fourier_basis(exported, feature_config):
    model, path = exported
    assert path.stat().st_size <= 1_000_000  # issue 7: MECOMP's model file is at most 1 MB
    sizes = constant_bytes(path)
    # The largest stored tensor is the mel basis (278 kB), then the factorised DFT's filters (139 kB): nothing
    # was folded back into a dense DFT (4.2 MB).
    assert max(sizes.values()) == sizes["frontend.mel_basis"] == 4 * model.frontend.mel_basis.numel()
    assert sizes["frontend.inner_filters"] == 4 * model.frontend.inner_filters.numel()
    assert sum(v for k, v in sizes.items() if k.startswith("frontend.")) < 450_000
    assert not {"STFT", "DFT"} & {n.op_type for n in onnx.load(str(path)).graph.node}


def test_onnx_runtime_agrees_with_torch_on_real_songs_of_any_length(exported, demo_paths):
    model, path = exported
    assert check_parity(path, model, demo_paths[:2]) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    song = load_audio(demo_paths[4])
    for batch, seconds in ((1, 1), (3, 7.3), (1, 31)):
        clip = np.repeat(song[None, : int(seconds * 22050)], batch, axis=0)
        out = session.run(["embedding"], {"audio": clip})[0]
        assert out.shape == (batch, 32) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out, model(torch.from_numpy(clip)).detach().numpy(), atol=1e-4)


def test_onnx_runtime_agrees_with_torch_on_a_batch_of_two_songs_at_odd_lengths(exported, demo_paths,
                                                                                  feature_config):
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    songs = [load_audio(p) for p in demo_paths[5:7]]
    for n_samples in (feature_config.n_fft, 1535, 5 * 22050 + 1, min(len(s) for s in songs)):
        batch = np.stack([s[len(s) - n_samples :] for s in songs])  # the ends, past any fade-in
        out = session.run(["embedding"], {"audio": batch})[0]
        expected = model(torch.from_numpy(batch)).detach().numpy()
        assert out.shape == (2, 32)
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
        if n_samples > 22050:  # under one model window, the silent padding dominates a random model
            assert not np.allclose(out[0], out[1], atol=1e-3)


def test_parity_check_fails_loudly_for_a_different_model(exported, checkpoint, demo_paths, feature_config):
    _, path = exported
    torch.manual_seed(5)
    other = build_audio_model(checkpoint)
    for p in other.parameters():
        p.data += 0.05
    with pytest.raises(ExportParityError, match="differs from torch"):
        check_parity(path, other, demo_paths[:1])


def test_winner_is_the_best_validation_score(tmp_path):
    for name, score in (("chunked-gru", 0.7), ("sliding-gru", 0.9), ("sliding-attention", 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"val_triplet_accuracy": score}))
    winner, scores = select_winner(tmp_path)
    assert winner.name == "sliding-attention"  # ties go to the first by name
    assert scores == {"chunked-gru": 0.7, "sliding-attention": 0.9, "sliding-gru": 0.9}
    with pytest.raises(KeyError, match="test_accuracy"):
        select_winner(tmp_path, "test_accuracy")
    with pytest.raises(FileNotFoundError, match="stage 04"):
        select_winner(tmp_path / "chunked-gru")


def test_mecomps_loading_path_gives_unit_embeddings_of_real_songs(exported, demo_paths):
    """As MECOMP loads the file: an ONNX Runtime session, input ``audio``, output ``embedding``."""
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["audio"]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"
    for song_path in demo_paths[:4]:
        (embedding,) = session.run(["embedding"], {"audio": load_audio(song_path)[None]})
        assert embedding.shape == (1, 32) and embedding.dtype == np.float32
        assert abs(float(np.linalg.norm(embedding)) - 1.0) <= 1e-5


def test_onnx_runtime_agrees_with_torch_from_one_second_to_ten_minutes(exported, demo_paths):
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    songs = [load_audio(p) for p in demo_paths]
    ten_minutes = np.concatenate(songs)[: 600 * 22050]  # real music, one song after another
    assert len(ten_minutes) == 600 * 22050
    for seconds in (1, 10, 95.5, 600):
        clip = np.ascontiguousarray(ten_minutes[: int(seconds * 22050)][None])
        expected = model(torch.from_numpy(clip)).detach().numpy()
        np.testing.assert_allclose(session.run(["embedding"], {"audio": clip})[0], expected, atol=1e-4, rtol=0)


def test_a_zero_padded_batch_gives_each_song_its_embedding_alone(exported, demo_paths, feature_config):
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    song = load_audio(demo_paths[2])
    hop = feature_config.hop_length
    # under one STFT window, under one model window, whole hops, one sample short of them, and longer songs
    lengths = [0, 700, 13_000, 100 * hop, 100 * hop - 1, 3 * 22050 + 77, 20 * 22050]
    clips = [song[5 * 22050 + 13 * i :][:n] for i, n in enumerate(lengths)]
    alone = np.concatenate([session.run(["embedding"], {"audio": clip[None]})[0] for clip in clips])
    batch = np.zeros((len(clips), max(lengths) + 3 * hop + 5), dtype=np.float32)
    for row, clip in zip(batch, clips):
        row[: len(clip)] = clip
    batched = session.run(["embedding"], {"audio": batch})[0]
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)
    # trailing digital silence is padding: it does not change the embedding; leading silence does
    np.testing.assert_allclose(batched[-1], alone[-1], atol=1e-5)
    lead = np.concatenate([np.zeros(22050, np.float32), clips[-1]])[None]
    assert np.abs(session.run(["embedding"], {"audio": lead})[0][0] - alone[-1]).max() > 1e-4


@pytest.mark.parametrize("case", ["silence", "empty", "one sample", "under one window", "nan", "inf", "all nan"])
def test_bad_input_gives_a_finite_unit_vector(exported, demo_paths, case):
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    song = load_audio(demo_paths[0])[: 10 * 22050].copy()
    audio = {
        "silence": np.zeros(60 * 22050, np.float32),
        "empty": np.zeros(0, np.float32),
        "one sample": song[5000:5001],
        "under one window": song[:700],
        "nan": np.where(np.arange(len(song)) % 60000 == 7, np.nan, song).astype(np.float32),
        "inf": np.where(np.arange(len(song)) == 4321, np.inf, song).astype(np.float32),
        "all nan": np.full(22050, np.nan, np.float32),
    }[case]
    (embedding,) = session.run(["embedding"], {"audio": audio[None]})
    assert np.isfinite(embedding).all()
    assert abs(float(np.linalg.norm(embedding)) - 1.0) <= 1e-5
    if case in ("nan", "inf"):  # a few broken samples only silence their frames
        (clean,) = session.run(["embedding"], {"audio": song[None]})
        assert float(embedding[0] @ clean[0]) > 0.99


@pytest.mark.parametrize("window, head", [("chunked", "gru"), ("sliding", "attention")])
def test_tract_imports_and_runs_the_exported_model(tmp_path, feature_config, demo_paths, window, head):
    """tract (sonos/tract, the Rust engine behind its Python bindings) agrees with ONNX Runtime."""
    import tract

    torch.manual_seed(3)
    model = build_audio_model_from(build_embedder(model_cfg(window, head), feature_config), feature_config)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    runnable = tract.onnx().load(str(path)).into_model().into_runnable()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    song = load_audio(demo_paths[3])
    for audio in (song[None], song[None, :66_227], song[None, :700], np.stack([song[:50_000], song[1:50_001] * 0.5])):
        audio = np.ascontiguousarray(audio)
        actual = runnable.run([audio])[0].to_numpy()
        np.testing.assert_allclose(actual, session.run(["embedding"], {"audio": audio})[0], atol=1e-4, rtol=0)


def build_audio_model_from(embedder, feature_config) -> AudioEmbedder:
    return AudioEmbedder(LogMelFrontend(feature_config), embedder.eval()).eval()
