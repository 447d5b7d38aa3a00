"""Log-mel and MFCC features, as cached by stage 02 and mirrored in the model, and songfeel's one mel analysis.

:func:`mel_power` is the mel analysis every front end shares: the power mel
spectrogram of an STFT with a periodic Hann window (librosa), its parameters
passed in from conf. Stage 02's log-mel (:func:`log_mel`) is
``10 * log10(max(amin, mel_power))`` with ``center=False``, so every frame depends
only on its own samples; SSM-Net's input compresses it as ``log(1 + C * mel)``
(:func:`songfeel.segmentation.features.structure_features`) and Foote's baseline
takes it to dB below the song's peak (:func:`songfeel.segmentation.baselines.frame_features`).
:class:`songfeel.models.frontend.LogMelFrontend` computes :func:`log_mel` with torch
ops inside the exported model; the tests hold them together.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
import scipy.signal

#: Bump when the way features are computed changes, so stale stores are detected.
FEATURE_VERSION = 1


class ConfMapping:
    """``from_mapping`` and ``to_dict`` for the frozen config dataclasses built from a conf section."""

    #: With True, every field must be in the section, defaults included.
    REQUIRE_ALL = False

    @classmethod
    def from_mapping(cls, mapping: Mapping):
        """Build from a dict or OmegaConf node, ignoring unrelated keys (:func:`config_from_mapping`).

        Raises:
            ValueError: the mapping lacks a field (every one is named).
        """
        return config_from_mapping(cls, mapping, require_all=cls.REQUIRE_ALL)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FeatureConfig(ConfMapping):
    """Parameters of the log-mel / MFCC front end.

    Every field comes from ``conf/features/logmel.yaml`` (:meth:`from_mapping`).

    Attributes:
        sample_rate: Hz.
        n_fft: STFT window length, in samples.
        hop_length: STFT hop, in samples.
        n_mels: mel bands.
        fmin: lowest mel frequency, Hz.
        fmax: highest mel frequency, Hz (None for sample_rate / 2).
        n_mfcc: MFCC coefficients.
        amin: power floor before the log (sets the dB of silence: -100 dB).
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float | None
    n_mfcc: int
    amin: float

    REQUIRE_ALL = True

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def silence_db(self) -> float:
        """The log-mel value of digital silence, in dB."""
        return float(10.0 * np.log10(self.amin))

    def seconds_to_frames(self, seconds: float) -> int:
        """Number of whole frames in ``seconds`` (rounded to the nearest frame)."""
        return int(round(seconds * self.frame_rate))

    def n_frames(self, n_samples: int) -> int:
        """Frames in a signal of ``n_samples`` (``center=False``); 0 if shorter than n_fft."""
        if n_samples < self.n_fft:
            return 0
        return 1 + (n_samples - self.n_fft) // self.hop_length


def config_from_mapping(cls, mapping: Mapping, require_all: bool = False):
    """An instance of the dataclass ``cls`` from a dict or an OmegaConf node, ignoring unrelated keys.

    Conf is the one source of a config's values: every field without a default must be in
    ``mapping`` (with ``require_all``, every field), none is filled in silently.

    Raises:
        ValueError: ``mapping`` lacks fields; the message names ``cls`` and every missing key.
    """
    fields = dataclasses.fields(cls)
    missing = [f.name for f in fields if f.name not in mapping and (
        require_all or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))]
    if missing:
        raise ValueError(f"{cls.__name__} needs {', '.join(missing)}: missing from its config section "
                         f"(which has {', '.join(str(k) for k in mapping) or 'no keys'})")
    return cls(**{f.name: mapping[f.name] for f in fields if f.name in mapping})


def mel_power(samples: np.ndarray, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, fmin: float,
              fmax: float | None, center: bool) -> np.ndarray:
    """The mel analysis of every front end: the power mel spectrogram (librosa).

    ``librosa.feature.melspectrogram``: the squared magnitude of an STFT with a periodic Hann
    window (with ``center``, the signal is zero-padded by ``n_fft // 2`` at both ends and frame
    ``t`` is centred on sample ``t * hop_length``), through the Slaney-normalised mel filterbank of
    :func:`mel_filterbank`. Its callers pass their own parameters from conf:
    :func:`log_mel` computes the same as ``center=False`` (faster), SSM-Net's front end and Foote's
    baseline call it with ``center=True``.

    Args:
        samples: mono audio, shape (n_samples,), at ``sample_rate``.
        sample_rate: Hz.
        n_fft: STFT window length, in samples.
        hop_length: STFT hop, in samples.
        n_mels: mel bands.
        fmin, fmax: the filterbank's frequency range, Hz (``fmax`` None: ``sample_rate / 2``).
        center: centre the frames (see above).

    Returns:
        array of shape (n_mels, n_frames), float32 for float32 samples.
    """
    return librosa.feature.melspectrogram(y=samples, sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                          n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0, center=center)


@functools.lru_cache(maxsize=8)
def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-normalised mel filterbank (librosa), shape (n_mels, 1 + n_fft // 2)."""
    return librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
    ).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float32 (the one librosa's STFT uses)."""
    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)


def log_mel(samples: np.ndarray, cfg: FeatureConfig, block_frames: int = 4096) -> np.ndarray:
    """Log-mel spectrogram in dB: ``10 * log10(max(amin, mel_power))`` of :func:`mel_power` with ``center=False``.

    The same values as ``librosa.power_to_db(mel_power(samples, ..., center=False),
    amin=cfg.amin, ref=1, top_db=None).T`` (the tests check it), about 8x faster:
    the frames are a strided view and the float32 STFT is ``scipy.fft.rfft``,
    computed in blocks so that a 1 h song needs no more than a few tens of MB.

    Args:
        samples: mono audio, shape (n_samples,), at ``cfg.sample_rate``.
        cfg: front-end parameters.
        block_frames: frames transformed at once.

    Returns:
        float32 array of shape (n_frames, n_mels), ``n_frames = cfg.n_frames(n_samples)``.

    Raises:
        ValueError: ``samples`` is shorter than one STFT window (``cfg.n_fft``).
    """
    if samples.shape[-1] < cfg.n_fft:
        raise ValueError(f"{samples.shape[-1]} samples is shorter than one STFT window ({cfg.n_fft})")
    samples = np.asarray(samples, dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, cfg.n_fft)[:: cfg.hop_length]
    window, basis = _hann(cfg.n_fft), mel_filterbank(cfg).T
    out = np.empty((frames.shape[0], cfg.n_mels), dtype=np.float32)
    for start in range(0, frames.shape[0], block_frames):
        spectrum = scipy.fft.rfft(frames[start : start + block_frames] * window, axis=1)
        power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag
        out[start : start + block_frames] = power @ basis
    np.maximum(out, cfg.amin, out=out)
    np.log10(out, out=out)
    out *= 10.0
    return out


def mfcc(logmel_db: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """MFCCs of a log-mel spectrogram: the orthonormal DCT-II over mel bands, first ``n_mfcc``.

    The same values as ``librosa.feature.mfcc(S=logmel_db.T, n_mfcc=...)`` (the
    tests check it), taken along the contiguous axis.

    Args:
        logmel_db: shape (n_frames, n_mels), from :func:`log_mel`.

    Returns:
        float32 array of shape (n_frames, n_mfcc).
    """
    coeffs = scipy.fft.dct(logmel_db, type=2, norm="ortho", axis=1)[:, : cfg.n_mfcc]
    return np.ascontiguousarray(coeffs, dtype=np.float32)
