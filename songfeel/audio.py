"""Decoding, downmixing and resampling of audio files.

Every track enters songfeel through :func:`load_audio`, which returns mono
float32 samples at MECOMP's analysis sample rate (22050 Hz by default).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from songfeel.errors import AudioDecodeError, AudioTooShortError, SilentAudioError

log = logging.getLogger(__name__)

#: MECOMP analyses audio at this sample rate (Hz).
MECOMP_SAMPLE_RATE = 22050

#: Peak amplitude below which a track counts as digital silence (about -100 dBFS).
SILENCE_PEAK = 1e-5


def downmix(samples: np.ndarray) -> np.ndarray:
    """Average the channels of ``samples`` into one.

    Args:
        samples: audio of shape (n_samples, n_channels) or (n_samples,).

    Returns:
        float32 array of shape (n_samples,).
    """
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float32)


def load_audio(
    path: str | Path,
    sample_rate: int = MECOMP_SAMPLE_RATE,
    min_seconds: float = 0.0,
    allow_silence: bool = False,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``.

    Decoding uses libsndfile (WAV, FLAC, Ogg Vorbis, Opus, MP3), downmixing
    averages the channels and resampling uses soxr (high quality).

    Args:
        path: an audio file.
        sample_rate: target sample rate in Hz.
        min_seconds: shortest duration accepted, in seconds.
        allow_silence: if False, a silent track raises :class:`SilentAudioError`.

    Returns:
        float32 array of shape (n_samples,), at ``sample_rate``.

    Raises:
        AudioDecodeError: the file is missing, corrupt, empty or holds NaN/Inf.
        AudioTooShortError: it lasts less than ``min_seconds``.
        SilentAudioError: it is digital silence and ``allow_silence`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    try:
        samples, source_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(path, f"cannot decode: {exc}") from exc
    if samples.shape[0] == 0:
        raise AudioDecodeError(path, "no audio frames")
    mono = downmix(samples)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(path, "decoded samples contain NaN or Inf")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32)
    duration = mono.shape[0] / sample_rate
    if duration < min_seconds:
        raise AudioTooShortError(path, f"lasts {duration:.2f} s, less than the {min_seconds:.2f} s needed")
    if not allow_silence and float(np.abs(mono).max()) < SILENCE_PEAK:
        raise SilentAudioError(path, "the track is digital silence")
    return mono


def audio_info(path: str | Path) -> dict:
    """Read a file's header without decoding it.

    Returns:
        dict with ``duration_seconds`` (float), ``sample_rate`` (Hz) and ``channels``.

    Raises:
        AudioDecodeError: the file is missing or its header cannot be read.
    """
    path = Path(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(path, f"cannot read header: {exc}") from exc
    return {
        "duration_seconds": float(info.duration),
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
    }
