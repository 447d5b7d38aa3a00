"""Other formats of the exported model: safetensors + JSON, fp16 and int8 ONNX, and their comparison.

- :func:`write_safetensors` / :func:`load_safetensors`: the embedder's weights as
  safetensors (https://huggingface.co/docs/safetensors) and, beside them, a JSON
  file that specifies the preprocessing and the architecture completely, with
  reference values, so that a Rust port (candle, burn) can be built and checked
  without Python. The front end's DFT and mel matrices are not stored: they are
  derived from the JSON (see :mod:`songfeel.models.frontend`).
- :func:`export_fp16`: the ONNX model with the embedder's weights stored as fp16
  (computed in fp32) and the log-mel front end untouched; input ``audio`` and
  output ``embedding`` stay float32.
- :func:`export_int8`: ONNX Runtime dynamic quantisation (int8 weights of the
  embedder's MatMul and Gemm, activations quantised at run time), the front end
  left in fp32.
- :func:`compare_variants`: size, agreement with the fp32 model (cosine) and
  single-thread speed of each variant, in one run.

Every ONNX variant keeps MECOMP's contract (:mod:`songfeel.export.onnx`): input
``audio`` float32 (batch, n_samples), mono at 22050 Hz; output ``embedding``
float32 (batch, 32), unit L2 norm.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import safetensors
import safetensors.torch
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from onnx import TensorProto, numpy_helper
from torch import nn

import songfeel
from songfeel.export.cost import MECOMP, embedding_cost
from songfeel.export.onnx import INPUT_NAME, OUTPUT_NAME
from songfeel.features import FeatureConfig, mel_filterbank
from songfeel.models.embedder import AudioEmbedder, SongEmbedder, build_embedder
from songfeel.models.frontend import LogMelFrontend
from songfeel.models.heads import AttentionHead, GRUHead

log = logging.getLogger(__name__)

#: The ``format`` field of the JSON config; :func:`load_safetensors` refuses any other.
FORMAT_NAME = "songfeel-embedder"
#: Bump when the JSON layout changes incompatibly.
FORMAT_VERSION = 1
#: Prefix of the ONNX node names of the embedder (the TorchScript exporter names nodes by module path); every
#: other node is the front end or :class:`AudioEmbedder`'s glue around it (padding, the trailing-silence mask).
EMBEDDER_PREFIX = "/embedder/"

#: The reference signal of the JSON config: a sine, computed in float64 and rounded to float32.
REFERENCE_SINE = {"frequency_hz": 440.0, "amplitude": 0.5, "seconds": 1.0}
#: Frames of the reference signal's log-mel written to the JSON config.
REFERENCE_FRAMES = 3
#: The reference values hold to this many dB on every value above :data:`REFERENCE_CHECK_ABOVE_DB`.
REFERENCE_TOLERANCE_DB = 0.01
REFERENCE_CHECK_ABOVE_DB = -60.0


# --------------------------------------------------------------------------------------------------------------------
# safetensors + JSON
# --------------------------------------------------------------------------------------------------------------------


def config_path(weights_path: str | Path) -> Path:
    """The JSON config beside a weights file: ``model.safetensors`` -> ``model.json``."""
    return Path(weights_path).with_suffix(".json")


def reference_signal(sample_rate: int, frequency_hz: float = 440.0, amplitude: float = 0.5,
                     seconds: float = 1.0) -> np.ndarray:
    """The deterministic test signal of the JSON config.

    ``x[n] = float32(amplitude * sin(2 pi frequency_hz n / sample_rate))``, computed in
    float64, ``n = 0 .. round(seconds * sample_rate) - 1``.

    Returns:
        float32 array of shape (n_samples,), values in [-amplitude, amplitude].
    """
    n = np.arange(int(round(seconds * sample_rate)), dtype=np.float64)
    return (amplitude * np.sin(2.0 * np.pi * frequency_hz * n / sample_rate)).astype(np.float32)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mel_spec(cfg: FeatureConfig) -> dict[str, Any]:
    """How to build the mel filterbank without librosa, with check values."""
    basis = mel_filterbank(cfg)  # (n_mels, 1 + n_fft // 2), float32
    fmax = float(cfg.fmax) if cfg.fmax is not None else cfg.sample_rate / 2.0
    return {
        "n_mels": cfg.n_mels,
        "fmin_hz": float(cfg.fmin),
        "fmax_hz": fmax,
        "scale": "slaney",
        "norm": "slaney",
        "htk": False,
        "shape": [cfg.n_mels, cfg.n_fft // 2 + 1],
        "dtype": "float32",
        "source": (f"librosa.filters.mel(sr={cfg.sample_rate}, n_fft={cfg.n_fft}, n_mels={cfg.n_mels}, "
                   f"fmin={float(cfg.fmin)}, fmax={cfg.fmax}) with its defaults htk=False, norm='slaney', "
                   "as float32, librosa's default dtype (librosa 0.11.0; songfeel.features.mel_filterbank)"),
        "scale_formula": ("Slaney (Auditory Toolbox) mel: mel(f) = 3 f / 200 for f < 1000 Hz, else "
                          "15 + ln(f / 1000) / (ln(6.4) / 27); hz(m) is its inverse"),
        "weights_formula": ("f_k = k sample_rate / n_fft for k = 0 .. n_fft / 2; edges e_0 .. e_{n_mels + 1} = "
                            "hz(linspace(mel(fmin), mel(fmax), n_mels + 2)); "
                            "w[m, k] = max(0, min((f_k - e_m) / (e_{m+1} - e_m), "
                            "(e_{m+2} - f_k) / (e_{m+2} - e_{m+1}))) * 2 / (e_{m+2} - e_m)"),
        "applied": "mel[t, m] = sum_k w[m, k] power[t, k]",
        "check": {
            "sum_per_band": [float(f"{v:.8g}") for v in basis.astype(np.float64).sum(axis=1)],
            "peak_bin_per_band": [int(i) for i in basis.argmax(axis=1)],
            "relative_tolerance": 1e-5,
        },
    }


def preprocessing_spec(cfg: FeatureConfig) -> dict[str, Any]:
    """The log-mel front end (:class:`LogMelFrontend`) in words and formulas, for the JSON config.

    Units are in the key names (``_hz``, ``_samples``, ``_seconds``, ``_db``).
    """
    sr = cfg.sample_rate
    return {
        "input": "mono float32 samples at sample_rate_hz, nominally in [-1, 1] (MECOMP decodes, downmixes, resamples)",
        "sample_rate_hz": sr,
        "n_fft_samples": cfg.n_fft,
        "n_fft_seconds": cfg.n_fft / sr,
        "hop_length_samples": cfg.hop_length,
        "hop_length_seconds": cfg.hop_length / sr,
        "frame_rate_hz": cfg.frame_rate,
        "center": False,
        "framing": ("frame t holds samples [t hop, t hop + n_fft), no padding at either end (center=False); "
                    "n_frames = 1 + (max(n_samples, n_fft) - n_fft) // hop; trailing samples that do not fill a hop "
                    "are ignored"),
        "window": {
            "type": "hann",
            "periodic": True,
            "length_samples": cfg.n_fft,
            "formula": "w[n] = 0.5 - 0.5 cos(2 pi n / n_fft), n = 0 .. n_fft - 1 (scipy.signal.get_window('hann'))",
        },
        "spectrum": {
            "dft": "X[t, k] = sum_n w[n] x[t hop + n] exp(-2 pi i k n / n_fft), unnormalised, k = 0 .. n_fft / 2",
            "n_bins": cfg.n_fft // 2 + 1,
            "power": 2.0,
            "formula": "power[t, k] = Re(X[t, k])^2 + Im(X[t, k])^2 (power spectrum, not magnitude)",
        },
        "mel": _mel_spec(cfg),
        "log": {
            "formula": "log_mel[t, m] = 10 log10(max(mel[t, m], amin))",
            "amin": cfg.amin,
            "ref": 1.0,
            "top_db": None,
            "floor_db": cfg.silence_db,
        },
        "output": {"shape": ["n_frames", "n_mels"], "unit": "dB", "dtype": "float32"},
        "short_input": (f"input shorter than one STFT window (n_fft = {cfg.n_fft} samples, "
                        f"{1000 * cfg.n_fft / sr:.1f} ms), including empty input, is zero-padded at the end to "
                        "n_fft samples and gives exactly one frame"),
        "silence": f"digital silence gives floor_db ({cfg.silence_db:g} dB) in every band",
        "trailing_silence": ("trailing digital silence (exact zeros) is padding, so a song gets the same embedding "
                             "alone and zero-padded in a batch: valid_frames = 1 + (max(L, n_fft) - n_fft) // hop, "
                             "L = 1 + the index of the row's last non-zero sample (0 for an all-zero row; a hop "
                             "counts as sounding when the sum of |x| over it is > 0); frames t >= valid_frames are "
                             "set to floor_db in every band, and valid_frames masks the windows "
                             "(architecture.windows)"),
        "non_finite": ("a frame whose mel power is NaN or +-Inf (NaN or Inf samples, or samples so large that the "
                       "power overflows float32) is set to floor_db in every band, as if silent; other frames are "
                       "untouched"),
        "precision": "float32 throughout; the reference implementation factorises the DFT (Cooley-Tukey) but any "
                     "exact DFT/FFT agrees with it within the reference tolerance",
        "source": ("songfeel.models.frontend.LogMelFrontend (extend, log_mel, valid_frames) as called by "
                   "songfeel.models.embedder.AudioEmbedder.forward; songfeel.features.log_mel computes the same "
                   "log-mel values"),
    }


def _named(module: nn.Module, prefix: str) -> dict[str, str]:
    """Tensor names of a module's parameters and buffers, as in the embedder's state_dict."""
    return {key: f"{prefix}.{key}" for key in module.state_dict()}


def _layer_spec(module: nn.Module, name: str) -> dict[str, Any]:
    if isinstance(module, nn.Conv2d):
        return {"op": "conv2d", "in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel": list(module.kernel_size), "stride": list(module.stride), "padding": list(module.padding),
                "groups": module.groups, "weight": f"{name}.weight",
                "bias": f"{name}.bias" if module.bias is not None else None}
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        return {"op": "batch_norm", "eps": module.eps, **_named(module, name),
                "formula": "y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel"}
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}
    raise ValueError(f"no description for layer {name} ({type(module).__name__})")


def _head_spec(head: nn.Module) -> dict[str, Any]:
    pool = ("masked attention pooling: scores s (T, heads) -> softmax over time per head -> "
            "out[h * d + j] = sum_t softmax(s)[t, h] v[t, h * d + j], d = dim / heads")
    if isinstance(head, GRUHead):
        gru = head.gru
        return {
            "type": "gru",
            "hidden_size": gru.hidden_size,
            "num_layers": gru.num_layers,
            "gru_tensors": list(_named(gru, "head.gru").values()),
            "score": {"op": "linear", "in_features": head.score.in_features, "out_features": 1,
                      **_named(head.score, "head.score")},
            "gru": ("torch.nn.GRU, batch_first, unidirectional, initial state zeros; gates in weight rows order "
                    "(r, z, n): r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), "
                    "z = sigmoid(W_iz x + b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), "
                    "h' = (1 - z) * n + z * h"),
            "pool": f"scores = head.score(h) (1 head); {pool}; values = the GRU outputs h",
            "out_dim": head.out_dim,
        }
    if isinstance(head, AttentionHead):
        return {
            "type": "attention",
            "model_dim": head.out_dim,
            "num_heads": head.num_heads,
            "head_dim": head.head_dim,
            "ff_dim": head.ff[0].out_features,
            "layer_norm_eps": head.norm1.eps,
            "tensors": list(_named(head, "head").values()),
            "layer": ("x = proj(x); q, k, v = split(qkv(x)) as (3, heads, head_dim) per step; "
                      "a = softmax(q k^T / sqrt(head_dim)) v per head (masked steps get -1e9 before softmax); "
                      "x = norm1(x + out(concat_heads(a))); x = norm2(x + ff.2(gelu(ff.0(x)))); gelu is exact (erf)"),
            "pool": f"scores = pool_score(x) ({head.num_heads} heads); {pool}; values = x",
            "out_dim": head.out_dim,
        }
    log.warning("no language-neutral description of head %s; the JSON holds its config only", type(head).__name__)
    return {"type": type(head).__name__, "tensors": list(_named(head, "head").values())}


def architecture_spec(embedder: SongEmbedder, config: Mapping[str, Any], cfg: FeatureConfig) -> dict[str, Any]:
    """The embedder's architecture for the JSON config: the checkpoint's config and every layer in words.

    Linear layers are ``y = x W^T + b`` with W of shape (out, in) (torch); Conv2d
    weights are (out_channels, in_channels / groups, kh, kw), cross-correlation, NCHW.
    """
    layers = [_layer_spec(module, f"encoder.net.{index}") if not isinstance(module, nn.Sequential)
              else [_layer_spec(sub, f"encoder.net.{index}.{j}") for j, sub in enumerate(module)]
              for index, module in enumerate(embedder.encoder.net)]
    flat = [layer for item in layers for layer in (item if isinstance(item, list) else [item])]
    return {
        "config": _plain(config),
        "conventions": ("torch layouts: linear y = x W^T + b, W (out_features, in_features); conv2d is "
                        "cross-correlation on NCHW, W (out_channels, in_channels / groups, kh, kw), zero padding; "
                        "layers run in the order listed; every tensor named here is in the weights file"),
        "embedding_dim": embedder.projection.out_features,
        "input_norm": {**_layer_spec(embedder.input_norm, "input_norm"),
                       "applied": "to each frame's n_mels log-mel values, before the windows are cut"},
        "windows": {
            "window_frames": embedder.window_frames,
            "hop_frames": embedder.hop_frames,
            "window_seconds": embedder.window_frames / cfg.frame_rate,
            "hop_seconds": embedder.hop_frames / cfg.frame_rate,
            "config_window_seconds": config["window"]["window_seconds"],
            "config_hop_seconds": config["window"]["hop_seconds"],
            "n_windows": "max(1, (n_frames - window_frames) // hop_frames + 1)",
            "short_song": ("when n_frames < window_frames, floor_db frames are appended up to window_frames "
                           "(after the trailing-silence floor), so such a song is one window"),
            "frames": ("window i holds frames i hop_frames + j, j = 0 .. window_frames - 1, with the frame index "
                       "clamped to n_frames - 1"),
            "mask": ("window i is valid when i < max(1, (valid_frames - window_frames) // hop_frames + 1), "
                     "valid_frames from preprocessing.trailing_silence; the head ignores the other windows"),
        },
        "encoder": {
            "input": "each window as (n_windows, 1, n_mels, window_frames): NCHW, height = mel bands, width = frames",
            "layers": flat,
            "output": "mean over height and width: (n_windows, channels[-1])",
        },
        "head": {**_head_spec(embedder.head),
                 "input": "(batch, n_windows, encoder channels) and the window mask (architecture.windows.mask)",
                 "masking": ("masked windows get a score of -1e9 before every softmax over windows (pooling, and "
                             "the attention head's keys); the GRU is causal, so windows after the valid ones cannot "
                             "change it")},
        "projection": {"op": "linear", "in_features": embedder.projection.in_features,
                       "out_features": embedder.projection.out_features,
                       "weight": "projection.weight", "bias": "projection.bias"},
        "l2_normalise": {"formula": "e = y / max(||y||_2, eps)", "eps": 1e-12},
        "source": "songfeel.models.embedder.SongEmbedder (encoder.WindowEncoder, heads)",
    }


def _reference_values(model: AudioEmbedder) -> dict[str, Any]:
    cfg = model.frontend.cfg
    signal = reference_signal(cfg.sample_rate, **REFERENCE_SINE)
    with torch.no_grad():
        audio = torch.from_numpy(signal)[None]
        frames = model.frontend(audio)[0].numpy()
        embedding = model(audio)[0].numpy()
    return {
        "signal": {
            "type": "sine", **REFERENCE_SINE, "n_samples": int(signal.size),
            "formula": "x[n] = float32(amplitude sin(2 pi frequency_hz n / sample_rate_hz)), computed in float64",
            "sha256_float32_le": hashlib.sha256(signal.astype("<f4").tobytes()).hexdigest(),
        },
        "n_frames": int(frames.shape[0]),
        "log_mel_db_first_frames": [[round(float(v), 4) for v in row] for row in frames[:REFERENCE_FRAMES]],
        "log_mel_db_mean_over_frames": [round(float(v), 4) for v in frames.astype(np.float64).mean(axis=0)],
        "log_mel_tolerance_db": REFERENCE_TOLERANCE_DB,
        "log_mel_check_above_db": REFERENCE_CHECK_ABOVE_DB,
        "log_mel_note": ("values at or below log_mel_check_above_db are spectral leakage near float32 round-off and "
                         "differ between DFT implementations by up to ~0.03 dB above -80 dB; the floor is exact"),
        "trailing_zeros": "appending zeros to the signal leaves its embedding unchanged (trailing_silence)",
        "embedding": [round(float(v), 7) for v in embedding],
        "embedding_tolerance": 1e-4,
        "source": "songfeel.models.frontend.LogMelFrontend and the model in torch, float32",
    }


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types (OmegaConf nodes, mappings and sequences converted recursively)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_safetensors(model: AudioEmbedder, checkpoint_meta: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Write the embedder's weights as safetensors and its full specification as JSON beside them.

    The weights are ``model.embedder.state_dict()`` (float32, with the BatchNorm
    running statistics and their int64 ``num_batches_tracked`` counters, unused at
    inference), saved with :func:`safetensors.torch.save_file` under the state-dict
    names (``input_norm.weight``, ``encoder.net.0.weight`` ...). The front end has
    no learnt weights: its constants derive from the ``preprocessing`` block.

    The JSON (``path`` with suffix ``.json``) holds: ``format``/``format_version``,
    the songfeel version and variant, the weights file's name and SHA-256, the
    model's input/output contract, ``features`` (:class:`FeatureConfig` fields, for
    :func:`load_safetensors`), ``preprocessing`` (:func:`preprocessing_spec`),
    ``architecture`` (:func:`architecture_spec`), ``tensors`` (name -> shape and
    dtype) and ``reference`` (log-mel frames and the embedding of a 440 Hz sine,
    :func:`reference_signal`, with tolerances).

    Args:
        model: the exported model (:func:`songfeel.export.onnx.build_audio_model`).
        checkpoint_meta: the checkpoint's metadata (:func:`songfeel.models.embedder.load_checkpoint`):
            ``config`` (window, model, head groups) is required; ``variant``, ``epoch``
            and other scalars are copied; ``features``, if present, must match the model's front end.
        path: the weights file, e.g. ``model.safetensors``.

    Returns:
        the JSON config as written.

    Raises:
        ValueError: ``checkpoint_meta`` has no ``config``, or its config or features do not describe ``model``;
            ``model`` is in training mode (the reference values need eval mode); ``path`` ends in ``.json``.
    """
    path = Path(path)
    if model.training:
        raise ValueError("model is in training mode: call model.eval() (BatchNorm must use its running statistics)")
    if path.suffix == ".json":
        raise ValueError(f"{path}: the weights file must not end in .json (the config goes there)")
    if "config" not in checkpoint_meta:
        raise ValueError("checkpoint_meta has no 'config' (window, model, head): cannot describe the architecture")
    cfg = model.frontend.cfg
    if "features" in checkpoint_meta and FeatureConfig.from_mapping(checkpoint_meta["features"]) != cfg:
        raise ValueError(f"checkpoint features {dict(checkpoint_meta['features'])} differ from the model's {cfg}")
    config = {k: _plain(checkpoint_meta["config"][k]) for k in ("window", "model", "head")}
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.embedder.state_dict().items()}
    expected = {name: tuple(t.shape) for name, t in build_embedder(config, cfg).state_dict().items()}
    if expected != {name: tuple(t.shape) for name, t in state.items()}:
        raise ValueError("checkpoint_meta['config'] does not rebuild the model's embedder "
                         "(tensor names or shapes differ)")

    variant = str(checkpoint_meta.get("variant", ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(path), metadata={
        "format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "songfeel_version": songfeel.__version__,
        "variant": variant, "config_file": config_path(path).name,
    })
    training = {k: v for k, v in checkpoint_meta.items()
                if k not in ("config", "features", "state_dict") and isinstance(v, str | int | float | bool)}
    spec = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "songfeel_version": songfeel.__version__,
        "variant": variant,
        "checkpoint": training,
        "weights_file": path.name,
        "weights_sha256": _sha256(path),
        "safetensors_version": safetensors.__version__,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", "n_samples"],
                  "sample_rate_hz": cfg.sample_rate, "channels": 1},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", model.embedder.projection.out_features],
                   "unit_l2_norm": True},
        "features": cfg.to_dict(),
        "preprocessing": preprocessing_spec(cfg),
        "architecture": architecture_spec(model.embedder, config, cfg),
        "tensors": {name: {"shape": list(t.shape), "dtype": _SAFETENSORS_DTYPES.get(t.dtype, str(t.dtype))}
                    for name, t in state.items()},
        "reference": _reference_values(model),
    }
    config_path(path).write_text(json.dumps(spec, indent=2) + "\n")
    log.info("wrote %s (%d tensors, %d bytes) and %s", path, len(state), path.stat().st_size, config_path(path).name)
    return spec


def load_safetensors(path: str | Path) -> AudioEmbedder:
    """Rebuild the model from a weights file and its JSON config alone (no checkpoint, no Hydra config).

    Args:
        path: the weights file written by :func:`write_safetensors`; its JSON config must be beside it.

    Returns:
        the :class:`AudioEmbedder` (log-mel front end from ``features``, embedder from
        ``architecture.config`` and the weights), in eval mode.

    Raises:
        FileNotFoundError: the weights file or its JSON config is missing.
        ValueError: the JSON is not this format (or a newer version), the weights file's
            SHA-256 differs from the JSON's, or the tensors do not match the architecture.
    """
    path = Path(path)
    for required in (path, config_path(path)):
        if not required.is_file():
            raise FileNotFoundError(f"{required}: not found (write_safetensors writes the weights and the config)")
    spec = json.loads(config_path(path).read_text())
    if spec.get("format") != FORMAT_NAME or int(spec.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(f"{config_path(path)}: format {spec.get('format')!r} version {spec.get('format_version')}, "
                         f"expected {FORMAT_NAME!r} version <= {FORMAT_VERSION}")
    if _sha256(path) != spec["weights_sha256"]:
        raise ValueError(f"{path}: SHA-256 differs from {config_path(path).name}'s; the two files are not a pair")
    features = FeatureConfig.from_mapping(spec["features"])
    embedder = build_embedder(spec["architecture"]["config"], features)
    state = safetensors.torch.load_file(str(path))
    expected = embedder.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: tensors do not match the architecture: missing {missing}, "
                         f"unexpected {unexpected}, wrong shape {wrong}")
    embedder.load_state_dict(state)
    return AudioEmbedder(LogMelFrontend(features), embedder).eval()


# --------------------------------------------------------------------------------------------------------------------
# ONNX graph helpers
# --------------------------------------------------------------------------------------------------------------------


def frontend_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the model's input to the embedder: the log-mel front end and the glue.

    That is every node but the embedder's: those named :data:`EMBEDDER_PREFIX`...,
    and unprefixed nodes (the exporter leaves some constants and Identity nodes
    without a module path, e.g. ``Constant_110``) whose outputs only embedder
    nodes use. The front end's nodes are named after the module that calls
    them (``/frontend/...`` or, for :class:`LogMelFrontend` methods called from
    :meth:`AudioEmbedder.forward`, top-level names like ``/Conv``), so they are
    found as the complement of the embedder.

    Raises:
        ValueError: no node is named :data:`EMBEDDER_PREFIX`... (not a model from
            :func:`songfeel.export.onnx.export_onnx`).
    """
    nodes = list(model.graph.node)
    if not any(node.name.startswith(EMBEDDER_PREFIX) for node in nodes):
        raise ValueError(f"no node is named {EMBEDDER_PREFIX}...: not a model from songfeel.export.onnx.export_onnx")
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    graph_outputs = {o.name for o in model.graph.output}
    embedder = [node.name.startswith(EMBEDDER_PREFIX) for node in nodes]
    changed = True
    while changed:
        changed = False
        for index, node in enumerate(nodes):
            if embedder[index] or node.name.startswith("/"):
                continue
            users = [u for out in node.output for u in consumers.get(out, [])]
            if users and all(embedder[u] for u in users) and not graph_outputs & set(node.output):
                embedder[index] = changed = True
    return [node.name for node, inside in zip(nodes, embedder) if not inside]


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` so that every node comes after the producers of its inputs (stable)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        remaining = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            raise ValueError(f"graph has a cycle or dangling inputs at {[n.name for n in remaining[:5]]}")
        pending = remaining
    del graph.node[:]
    graph.node.extend(ordered)


def _check_contract(model: onnx.ModelProto, path: Path) -> None:
    inputs, outputs = list(model.graph.input), list(model.graph.output)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ValueError(f"{path}: inputs {[i.name for i in inputs]} outputs {[o.name for o in outputs]}, "
                         f"expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    for value in (inputs[0], outputs[0]):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError(f"{path}: {value.name} is not float32")


# --------------------------------------------------------------------------------------------------------------------
# fp16 and int8
# --------------------------------------------------------------------------------------------------------------------


def _fp16_weights(model: onnx.ModelProto, frontend: set[str]) -> int:
    """Store every float32 initializer that only embedder nodes use as fp16, behind a Cast to float32.

    Returns:
        the number of initializers converted.

    Raises:
        ValueError: a weight exceeds fp16's range (65504).
    """
    graph = model.graph
    users: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.name)
    casts = []
    for tensor in list(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or not users.get(tensor.name) or users[tensor.name] & frontend:
            continue
        values = numpy_helper.to_array(tensor)
        if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
            raise ValueError(f"initializer {tensor.name} exceeds the fp16 range")
        half = numpy_helper.from_array(values.astype(np.float16), tensor.name + "_fp16")
        graph.initializer.remove(tensor)
        graph.initializer.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                           name=tensor.name + "_to_fp32"))
    graph.node.extend(casts)
    _topological_sort(graph)
    return len(casts)


def export_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write an fp16 variant of an fp32 ONNX model from :func:`songfeel.export.onnx.export_onnx`.

    Every float32 weight of the embedder (initializers that no front-end node
    uses) is stored as fp16 and cast back to float32 in the graph by a ``Cast``
    node, which ONNX Runtime folds into a float32 constant when it loads the
    model. So the file shrinks by half of the embedder's bytes, the arithmetic
    stays float32 (the only error is the weights' rounding, ~2^-11 relative) and
    the speed is the fp32 model's; any runtime that knows ``Cast`` runs it
    (ONNX Runtime, tract, burn).

    The log-mel front end is untouched, float32: its power spectra reach ~1e9 for
    full-scale audio, beyond fp16's 65504, and fp16 DFT and mel constants (11-bit
    mantissa) would raise the spectral-leakage floor to about -66 dB. Input
    ``audio`` and output ``embedding`` stay float32 (MECOMP's contract).

    Why not fp16 arithmetic (``onnxruntime.transformers.float16.convert_float_to_float16``
    with the front-end nodes in ``node_block_list`` and ``keep_io_types=True``),
    as tried with onnxruntime 1.31.1:

    - ONNX Runtime's CPU provider has no fp16 kernels for Conv, GRU, MatMul,
      BatchNormalization ... on x86; it inserts Casts around them and computes
      in float32, so fp16 arithmetic is no faster there and rounds every
      activation to fp16 on the way;
    - the converter gives an invalid graph when a tensor has several blocked
      consumers (one Cast per consumer, all with the same name and output), and
      rounds the graph input and every tensor between two blocked nodes through
      fp16 (a Cast to fp16 and back), which has to be repaired by hand;
    - once repaired, creating a session for the GRU model crashed ONNX Runtime
      (segmentation fault) at the default optimisation level, ORT_ENABLE_ALL;
      disabling ``NchwcTransformer`` or ``FuseFp16InitializerToFp32NodeTransformer``
      avoids it, but MECOMP cannot be asked to.

    Returns:
        ``out_path``.

    Raises:
        ValueError: a weight exceeds the fp16 range; the result breaks MECOMP's contract.
        onnx.checker.ValidationError: the result is not a valid ONNX model.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    converted = _fp16_weights(model, set(frontend_node_names(model)))
    model.doc_string = f"{onnx_path.name} with the embedder's weights stored as fp16 (songfeel.export.formats.export_fp16)"
    _check_contract(model, out_path)
    onnx.checker.check_model(model, full_check=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    log.info("fp16: %s, %d weights, %d -> %d bytes", out_path, converted, onnx_path.stat().st_size,
             out_path.stat().st_size)
    return out_path


def export_int8(onnx_path: str | Path, out_path: str | Path, per_channel: bool = True,
                exclude_op_types: Sequence[str] = ("Conv",)) -> Path:
    """Write a dynamically quantised int8 variant of an fp32 ONNX model.

    ``onnxruntime.quantization.quantize_dynamic`` with signed int8 weights (per
    output channel when ``per_channel``): the embedder's MatMul and Gemm nodes with
    a constant weight become ``MatMulInteger`` with int8 weights, their activations
    quantised to uint8 at run time (``DynamicQuantizeLinear``). Left in float32:

    - the front end (every node of :func:`frontend_node_names`): 8 bits cannot hold
      the DFT and mel matrices or a power spectrum whose range is ~190 dB;
    - by default (``exclude_op_types``), Conv: the window encoder's convolutions
      are tiny (depthwise and 1x1, ~12 k weights, ~9 kB saved as int8), and
      ONNX Runtime's ``ConvInteger`` with per-run activation quantisation made the
      whole model about half as fast on one CPU thread (onnxruntime 1.31.1; accuracy
      was fine: cosine > 0.9999 to fp32), so it is not worth it;
    - what ONNX Runtime does not quantise dynamically: GRU (only LSTM has a dynamic
      int8 kernel), so the GRU head's recurrent weights stay float32 and its int8
      file is barely smaller; BatchNormalization, LayerNormalization, Softmax;
    - MatMuls between two activations (attention scores): ``MatMulConstBOnly``.

    ``value_info`` (intermediate shapes the quantiser stores) is dropped from the
    result: ONNX Runtime infers it again, and it would add ~13 kB.

    Args:
        onnx_path: the fp32 model (:func:`songfeel.export.onnx.export_onnx`).
        out_path: the int8 model.
        per_channel: one weight scale per output channel rather than per tensor.
        exclude_op_types: op types left in float32 besides the front end; ``()`` quantises Conv too.

    Returns:
        ``out_path``.

    Raises:
        ValueError: the result breaks MECOMP's contract.
        onnx.checker.ValidationError: the result is not a valid ONNX model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    excluded = set(frontend_node_names(model)) | {n.name for n in model.graph.node if n.op_type in exclude_op_types}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(onnx_path, out_path, weight_type=QuantType.QInt8, per_channel=per_channel,
                     nodes_to_exclude=sorted(excluded), extra_options={"MatMulConstBOnly": True})
    quantised = onnx.load(str(out_path))
    del quantised.graph.value_info[:]
    quantised.doc_string = f"int8 dynamic quantisation of {onnx_path.name}"
    _check_contract(quantised, out_path)
    onnx.checker.check_model(quantised, full_check=True)
    onnx.save(quantised, str(out_path))
    ops = sorted({n.op_type for n in quantised.graph.node if "Integer" in n.op_type})
    log.info("int8: %s (%s), %d -> %d bytes", out_path, ", ".join(ops) or "nothing quantised",
             onnx_path.stat().st_size, out_path.stat().st_size)
    return out_path


# --------------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------------


def single_thread_session(path: str | Path) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with one intra-op and one inter-op thread (default graph optimisations)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare_variants(reference_onnx: str | Path, variant_paths: Mapping[str, str | Path],
                     audio: Sequence[np.ndarray], repeats: int = 3, sample_rate: int = 22050,
                     reference_name: str = "fp32", mecomp_onnx: str | Path | None = None) -> pd.DataFrame:
    """Size, agreement with the reference and single-thread speed of each model variant.

    Each song is embedded alone (batch 1) for the cosines. The speeds come from one run
    of :func:`songfeel.export.cost.embedding_cost`: every file, and MECOMP's model if given, in
    ONNX Runtime on one thread and one CPU, ``repeats`` passes over the songs after a
    warm-up call, the models interleaved song by song, so that a busy machine slows
    them alike.

    Args:
        reference_onnx: the fp32 model.
        variant_paths: variant name -> ONNX file.
        audio: songs, mono float32 at ``sample_rate``, shape (n_samples,) each, at least
            2048 samples (one MECOMP frame).
        repeats: timed passes.
        sample_rate: Hz; 22050 (MECOMP's rate).
        reference_name: the reference's row name.
        mecomp_onnx: MECOMP's model, timed in the same run; None leaves it out.

    Returns:
        one row per model, the reference first, indexed by name, with columns
        ``path``, ``bytes`` (file size), ``size_ratio`` (to the reference),
        ``cosine_min`` and ``cosine_mean`` (over songs, to the reference's
        embedding), ``max_norm_error`` (largest ``| ||e|| - 1 |``), ``audio_seconds``
        (one pass), ``compute_seconds`` (mean per pass), ``speed_x_realtime`` (audio
        seconds per compute second), ``speed_ratio`` (to the reference) and
        ``ratio_vs_mecomp`` (to MECOMP's model; NaN without it), all from the same run.
        ``table.attrs["mecomp_x_realtime"]`` holds MECOMP's speed (NaN without it).

    Raises:
        ValueError: no songs, ``repeats`` < 1, or a variant is named like the reference.
    """
    if not audio or repeats < 1:
        raise ValueError(f"need at least one song and one repeat, got {len(audio)} songs and repeats={repeats}")
    if reference_name in variant_paths:
        raise ValueError(f"a variant is named {reference_name!r}, the reference's name")
    paths = {reference_name: Path(reference_onnx), **{name: Path(p) for name, p in variant_paths.items()}}
    sessions = {name: single_thread_session(path) for name, path in paths.items()}
    songs = [np.ascontiguousarray(song, dtype=np.float32)[None] for song in audio]
    embeddings = {name: [session.run([OUTPUT_NAME], {INPUT_NAME: song})[0][0] for song in songs]
                  for name, session in sessions.items()}
    speeds = embedding_cost({}, {f"{i:03d}": song[0] for i, song in enumerate(songs)}, sample_rate,
                            mecomp_onnx=mecomp_onnx, repeats=repeats, mfcc=False, export=False,
                            onnx_models=paths).set_index("method")
    audio_seconds = sum(song.shape[1] for song in songs) / sample_rate
    rows = []
    for name, path in paths.items():
        cosines = [_cosine(e, r) for e, r in zip(embeddings[name], embeddings[reference_name])]
        rows.append({
            "variant": name,
            "path": str(path),
            "bytes": path.stat().st_size,
            "size_ratio": path.stat().st_size / paths[reference_name].stat().st_size,
            "cosine_min": min(cosines),
            "cosine_mean": float(np.mean(cosines)),
            "max_norm_error": max(abs(float(np.linalg.norm(e.astype(np.float64))) - 1.0) for e in embeddings[name]),
            "audio_seconds": audio_seconds,
            "compute_seconds": speeds.loc[name, "seconds"] / repeats,
            "speed_x_realtime": speeds.loc[name, "x_real_time"],
            "speed_ratio": speeds.loc[name, "x_real_time"] / speeds.loc[reference_name, "x_real_time"],
            "ratio_vs_mecomp": speeds.loc[name, "ratio_vs_mecomp"],
        })
    table = pd.DataFrame(rows).set_index("variant")
    table.attrs["mecomp_x_realtime"] = float(speeds["x_real_time"].get(MECOMP, np.nan))
    log.info("variants:\n%s", table.drop(columns="path").to_string(float_format=lambda v: f"{v:.5g}"))
    return table
