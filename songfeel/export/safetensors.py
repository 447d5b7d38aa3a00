"""The exported model as safetensors + JSON: weights, and a specification complete enough to port it.

:func:`write_safetensors` writes the embedder's weights as safetensors
(https://huggingface.co/docs/safetensors) and, beside them, a JSON file that
specifies the preprocessing (:func:`preprocessing_spec`) and the architecture
(:func:`architecture_spec`) completely, with reference values of a test signal
(:func:`reference_signal`), so that a Rust port (candle, burn) can be built and
checked without Python. The front end's DFT and mel matrices are not stored: they
are derived from the JSON (see :mod:`songfeel.models.frontend`).
:func:`load_safetensors` rebuilds the model from the two files alone.

The model's contract is MECOMP's (:mod:`songfeel.export.onnx`): input ``audio``
float32 (batch, n_samples), mono at 22050 Hz; output ``embedding`` float32
(batch, 32), unit L2 norm.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

import songfeel
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

#: The reference signal of the JSON config: a sine, computed in float64 and rounded to float32.
REFERENCE_SINE = {"frequency_hz": 440.0, "amplitude": 0.5, "seconds": 1.0}
#: Frames of the reference signal's log-mel written to the JSON config.
REFERENCE_FRAMES = 3
#: The reference values hold to this many dB on every value above :data:`REFERENCE_CHECK_ABOVE_DB`.
REFERENCE_TOLERANCE_DB = 0.01
REFERENCE_CHECK_ABOVE_DB = -60.0


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
