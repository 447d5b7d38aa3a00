"""songfeel.export.safetensors and songfeel.export.variants on real demo songs: safetensors + JSON,
fp16 and int8 ONNX variants, and their comparison.

The models have random weights (with random BatchNorm statistics, so that the
normalisation is not the identity); a trained model's weights may quantise
better or worse, so the cosine thresholds here are a floor, not a measurement.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import onnx
import pytest
import safetensors
import torch
from test_models import model_cfg
from torch import nn

from songfeel.audio import load_audio
from songfeel.export.onnx import build_audio_model, export_onnx
from songfeel.export.safetensors import (
    config_path,
    load_safetensors,
    reference_signal,
    write_safetensors,
)
from songfeel.export.variants import (
    compare_variants,
    export_fp16,
    export_int8,
    frontend_node_names,
    single_thread_session,
)
from songfeel.features import FeatureConfig, log_mel, mel_filterbank
from songfeel.models.embedder import build_embedder, load_checkpoint
from songfeel.models.frontend import LogMelFrontend

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def songs(demo_paths) -> list[np.ndarray]:
    """Five real demo songs (about 30 s each), mono float32 at 22050 Hz."""
    return [load_audio(path) for path in demo_paths[7:12]]


@pytest.fixture(scope="module", params=["gru", "attention"])
def checkpoint(request, tmp_path_factory, feature_config):
    """A random-weight checkpoint as stage 04 writes it, with random BatchNorm affine parameters and statistics."""
    torch.manual_seed(3)
    cfg = model_cfg("sliding", request.param)
    model = build_embedder(cfg, feature_config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(100)
        model.input_norm.running_mean.uniform_(-70.0, -30.0)  # dB: centre and scale the log-mel like training
        model.input_norm.running_var.uniform_(100.0, 400.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"state_dict": model.state_dict(), "config": {k: dict(v) for k, v in cfg.items()},
                "features": feature_config.to_dict(), "variant": f"sliding-{request.param}", "epoch": 1,
                "val_triplet_accuracy": 0.5}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint):
    """(model, fp32 ONNX path, {variant: path}) with the fp16 and int8 variants written beside it."""
    model = build_audio_model(checkpoint)
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(model, folder / "model.onnx", opset=17)
    variants = {"fp16": export_fp16(folder / "model.onnx", folder / "model_fp16.onnx"),
                "int8": export_int8(folder / "model.onnx", folder / "model_int8.onnx")}
    return model, folder / "model.onnx", variants


@pytest.fixture(scope="module")
def safetensors_files(tmp_path_factory, checkpoint):
    """(model, checkpoint metadata, weights path, JSON config as returned) after write_safetensors."""
    model = build_audio_model(checkpoint)
    _, meta = load_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("safetensors") / "model.safetensors"
    spec = write_safetensors(model, meta, path)
    return model, meta, path, spec


def embed(session, song: np.ndarray) -> np.ndarray:
    return session.run(["embedding"], {"audio": song[None]})[0][0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- safetensors + JSON ---------------------------------------------------------------------------------------------


def test_safetensors_round_trip_gives_identical_embeddings_on_real_songs(safetensors_files, songs):
    model, _, path, _ = safetensors_files
    rebuilt = load_safetensors(path)
    assert not rebuilt.training
    for name, tensor in model.embedder.state_dict().items():  # BatchNorm running statistics included
        assert torch.equal(rebuilt.embedder.state_dict()[name], tensor), name
    with torch.no_grad():
        for song in songs[:3]:
            audio = torch.from_numpy(song)[None]
            assert torch.equal(rebuilt(audio), model(audio))
    with safetensors.safe_open(str(path), framework="pt") as weights:
        assert set(weights.keys()) == set(model.embedder.state_dict())  # the embedder only: no front-end constants
        assert weights.metadata()["format"] == "songfeel-embedder"


def test_json_specifies_preprocessing_and_architecture(safetensors_files, feature_config):
    model, meta, path, spec = safetensors_files
    assert json.loads(config_path(path).read_text()) == spec
    assert spec["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec["variant"] == meta["variant"] and spec["songfeel_version"]
    assert FeatureConfig.from_mapping(spec["features"]) == feature_config

    pre = spec["preprocessing"]
    required = {"sample_rate_hz", "n_fft_samples", "n_fft_seconds", "hop_length_samples", "hop_length_seconds",
                "frame_rate_hz", "center", "framing", "window", "spectrum", "mel", "log", "short_input", "silence",
                "non_finite", "output"}
    assert required <= set(pre)
    assert (pre["sample_rate_hz"], pre["n_fft_samples"], pre["hop_length_samples"]) == (22050, 1024, 512)
    assert pre["n_fft_seconds"] == pytest.approx(1024 / 22050) and pre["center"] is False
    assert pre["window"]["type"] == "hann" and pre["window"]["periodic"] is True
    assert pre["spectrum"]["power"] == 2.0
    mel = pre["mel"]
    assert (mel["scale"], mel["norm"], mel["htk"], mel["n_mels"]) == ("slaney", "slaney", False, 64)
    assert (mel["fmin_hz"], mel["fmax_hz"]) == (0.0, 11025.0)
    assert pre["log"]["amin"] == 1e-10 and pre["log"]["floor_db"] == -100.0

    arch = spec["architecture"]
    assert arch["config"] == json.loads(json.dumps(meta["config"], default=list))  # ListConfig -> list
    assert arch["embedding_dim"] == 32 and arch["l2_normalise"]["eps"] == 1e-12
    windows = arch["windows"]
    assert (windows["window_frames"], windows["hop_frames"]) == (model.embedder.window_frames,
                                                                model.embedder.hop_frames)
    assert windows["hop_seconds"] == pytest.approx(model.embedder.hop_frames * 512 / 22050)
    state = model.embedder.state_dict()
    assert spec["tensors"] == {name: {"shape": list(t.shape), "dtype": "I64" if t.dtype == torch.int64 else "F32"}
                               for name, t in state.items()}

    def names(node):  # every tensor name the architecture mentions
        if isinstance(node, dict):
            return [n for v in node.values() for n in names(v)]
        if isinstance(node, list):
            return [n for v in node for n in names(v)]
        return [node] if isinstance(node, str) and node in state else []

    assert set(names({k: v for k, v in arch.items() if k != "config"})) == set(state)


def test_json_mel_formula_rebuilds_the_filterbank(safetensors_files, feature_config):
    """The mel filterbank is not stored: the JSON's formula must give librosa's, within its check tolerance."""
    mel = safetensors_files[3]["preprocessing"]["mel"]

    def to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27))

    def to_hz(m):
        return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27))

    freqs = np.arange(1024 // 2 + 1) * 22050 / 1024
    edges = to_hz(np.linspace(to_mel(mel["fmin_hz"]), to_mel(mel["fmax_hz"]), mel["n_mels"] + 2))
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    np.testing.assert_allclose(weights, mel_filterbank(feature_config), rtol=1e-5, atol=1e-8)
    check = mel["check"]
    np.testing.assert_allclose(weights.sum(axis=1), check["sum_per_band"], rtol=check["relative_tolerance"])
    assert weights.argmax(axis=1).tolist() == check["peak_bin_per_band"]


def test_json_reference_values_match_the_front_end_and_the_model_on_the_sine(safetensors_files, exported):
    model, _, _, spec = safetensors_files
    ref = spec["reference"]
    signal = reference_signal(22050, ref["signal"]["frequency_hz"], ref["signal"]["amplitude"],
                              ref["signal"]["seconds"])
    assert hashlib.sha256(signal.astype("<f4").tobytes()).hexdigest() == ref["signal"]["sha256_float32_le"]
    with torch.no_grad():
        frames = LogMelFrontend(FeatureConfig.from_mapping(spec["features"]))(torch.from_numpy(signal)[None])[0].numpy()
    stored = np.array(ref["log_mel_db_first_frames"])
    assert frames.shape[0] == ref["n_frames"] == 42 and stored.shape == (3, 64)
    np.testing.assert_allclose(frames[:3], stored, atol=1e-3)  # rounded to 1e-4 dB
    np.testing.assert_allclose(frames.mean(axis=0), ref["log_mel_db_mean_over_frames"], atol=1e-3)
    assert stored.max() > 20.0 and stored.min() == -100.0  # the 440 Hz band is loud, the top bands at the floor
    # An implementation with another FFT (scipy's, in float32) meets the stated tolerance.
    independent = log_mel(signal, FeatureConfig.from_mapping(spec["features"]))[:3]
    checked = stored > ref["log_mel_check_above_db"]
    assert checked.sum() > 40
    assert np.abs(independent - stored)[checked].max() <= ref["log_mel_tolerance_db"]
    # The embedding of the sine, from torch and from the exported ONNX model.
    with torch.no_grad():
        torch_embedding = model(torch.from_numpy(signal)[None])[0].numpy()
    np.testing.assert_allclose(torch_embedding, ref["embedding"], atol=1e-6)
    _, onnx_path, _ = exported
    session = single_thread_session(onnx_path)
    np.testing.assert_allclose(embed(session, signal), ref["embedding"], atol=ref["embedding_tolerance"])
    # As the JSON says (preprocessing.trailing_silence), trailing zeros are padding.
    padded = np.concatenate([signal, np.zeros(22050 + 300, dtype=np.float32)])
    np.testing.assert_allclose(embed(session, padded), ref["embedding"], atol=ref["embedding_tolerance"])


def test_load_safetensors_refuses_a_file_that_is_not_its_configs_pair(safetensors_files, tmp_path):
    model, meta, path, _ = safetensors_files
    other = tmp_path / "model.safetensors"
    write_safetensors(model, meta, other)
    config = config_path(other).read_text()
    config_path(other).unlink()
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_safetensors(other)
    config_path(other).write_text(config)
    other.write_bytes(path.read_bytes()[:-4] + b"    ")  # same size, other bytes
    with pytest.raises(ValueError, match="SHA-256"):
        load_safetensors(other)


def test_write_safetensors_refuses_metadata_that_does_not_describe_the_model(safetensors_files, tmp_path):
    model, meta, _, _ = safetensors_files
    with pytest.raises(ValueError, match="no 'config'"):
        write_safetensors(model, {k: v for k, v in meta.items() if k != "config"}, tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="features"):
        write_safetensors(model, {**meta, "features": {**meta["features"], "n_mels": 32}}, tmp_path / "b.safetensors")
    wider = {**meta["config"], "model": {**meta["config"]["model"], "encoder_channels": [8, 16, 32]}}
    with pytest.raises(ValueError, match="does not rebuild"):
        write_safetensors(model, {**meta, "config": wider}, tmp_path / "c.safetensors")
    model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            write_safetensors(model, meta, tmp_path / "d.safetensors")
    finally:
        model.eval()
    assert not list(tmp_path.iterdir())


# --- fp16 and int8 ONNX ---------------------------------------------------------------------------------------------


def test_fp16_variant_agrees_with_fp32_on_real_songs_and_is_smaller(exported, songs):
    _, path, variants = exported
    reference, fp16 = single_thread_session(path), single_thread_session(variants["fp16"])
    cosines = [cosine(embed(fp16, song), embed(reference, song)) for song in songs]
    log.info("fp16 cosine to fp32: min %.7f", min(cosines))
    assert min(cosines) >= 0.999
    assert variants["fp16"].stat().st_size < path.stat().st_size
    graph = onnx.load(str(variants["fp16"])).graph
    half = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert half and {t.name for t in graph.initializer if t.name.startswith("frontend.")} == {
        "frontend.inner_filters", "frontend.outer_basis", "frontend.mel_basis"}  # the front end stays float32
    frontend = set(frontend_node_names(onnx.load(str(path))))
    assert not half & {name for node in graph.node if node.name in frontend for name in node.input}


def test_int8_variant_agrees_with_fp32_on_real_songs_and_leaves_the_front_end_alone(exported, songs):
    _, path, variants = exported
    reference, int8 = single_thread_session(path), single_thread_session(variants["int8"])
    cosines = [cosine(embed(int8, song), embed(reference, song)) for song in songs]
    log.info("int8 cosine to fp32: min %.7f", min(cosines))
    assert min(cosines) >= 0.99
    graph = onnx.load(str(variants["int8"])).graph
    assert "MatMulInteger" in {n.op_type for n in graph.node}  # at least the projection is quantised
    fp32_frontend = set(frontend_node_names(onnx.load(str(path))))
    assert fp32_frontend <= {n.name for n in graph.node}
    assert not [n for n in graph.node if n.name in fp32_frontend and "Integer" in n.op_type]


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variants_keep_mecomps_contract(exported, songs, variant):
    _, _, variants = exported
    graph = onnx.load(str(variants[variant])).graph
    assert [i.name for i in graph.input] == ["audio"] and [o.name for o in graph.output] == ["embedding"]
    audio_type, out_type = graph.input[0].type.tensor_type, graph.output[0].type.tensor_type
    assert audio_type.elem_type == out_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param for d in audio_type.shape.dim] == ["batch", "n_samples"]
    assert out_type.shape.dim[1].dim_value == 32
    session = single_thread_session(variants[variant])
    for batch, seconds in ((1, 0.01), (2, 7.3), (1, 31.0)):
        clip = np.stack([song[: int(seconds * 22050)] for song in songs[:batch]])
        out = session.run(["embedding"], {"audio": clip})[0]
        assert out.shape == (batch, 32) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)


def test_compare_variants_reports_size_agreement_and_speed(exported, songs):
    _, path, variants = exported
    table = compare_variants(path, variants, songs[:2], repeats=2)
    log.info("variants:\n%s", table.drop(columns="path").to_string())
    assert list(table.index) == ["fp32", "fp16", "int8"]
    for name, file in {"fp32": path, **variants}.items():
        assert table.loc[name, "bytes"] == file.stat().st_size
    assert table.loc["fp32", "cosine_min"] == pytest.approx(1.0) and table.loc["fp32", "speed_ratio"] == 1.0
    assert (table["cosine_min"] >= 0.99).all() and (table["cosine_min"] <= table["cosine_mean"] + 1e-12).all()
    assert (table["speed_x_realtime"] > 0).all() and (table["speed_ratio"] > 0).all()
    assert table["audio_seconds"].iloc[0] == pytest.approx(sum(len(s) for s in songs[:2]) / 22050)
    assert (table["max_norm_error"] < 1e-3).all()
    assert table["ratio_vs_mecomp"].isna().all() and np.isnan(table.attrs["mecomp_x_realtime"])
    with pytest.raises(ValueError, match="fp32"):
        compare_variants(path, {"fp32": variants["fp16"]}, songs[:1])


def test_compare_variants_times_mecomps_model_in_the_same_run(exported, songs, mecomp_onnx):
    _, path, variants = exported
    table = compare_variants(path, variants, songs[:1], repeats=1, mecomp_onnx=mecomp_onnx)
    mecomp = table.attrs["mecomp_x_realtime"]
    assert mecomp > 0
    np.testing.assert_allclose(table["ratio_vs_mecomp"], table["speed_x_realtime"] / mecomp)
