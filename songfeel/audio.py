"""Decoding, downmixing and resampling of audio files.

Every track enters songfeel through :func:`load_audio`, which returns mono
float32 samples at MECOMP's analysis sample rate (22050 Hz by default). Files
are decoded with libsndfile (soundfile) and, where it fails (m4a/AAC, some MP3
variants), with FFmpeg through PyAV.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
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
    # A matrix-vector product: numpy's mean over the short channel axis is several times slower.
    weights = np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return samples.astype(np.float32, copy=False) @ weights


def load_audio(
    path: str | Path,
    sample_rate: int = MECOMP_SAMPLE_RATE,
    min_seconds: float = 0.0,
    allow_silence: bool = False,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``.

    Decoding uses libsndfile (WAV, FLAC, Ogg Vorbis, Opus, MP3), else FFmpeg
    (PyAV); downmixing averages the channels and resampling uses soxr (high quality).

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
    samples, source_rate = decode(path)
    if samples.shape[0] == 0:
        raise AudioDecodeError(path, "no audio frames")
    mono = downmix(samples)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(path, "decoded samples contain NaN or Inf")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    duration = mono.shape[0] / sample_rate
    if duration < min_seconds:
        raise AudioTooShortError(path, f"lasts {duration:.2f} s, less than the {min_seconds:.2f} s needed")
    if not allow_silence and float(np.abs(mono).max()) < SILENCE_PEAK:
        raise SilentAudioError(path, "the track is digital silence")
    return mono


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode a file at its own sample rate: libsndfile first, then FFmpeg (PyAV) for what it cannot read.

    Returns:
        float32 samples of shape (n_samples, n_channels) and the sample rate in Hz.

    Raises:
        AudioDecodeError: neither decoder can read the file (both causes are named).
    """
    try:
        samples, source_rate = sf.read(path, dtype="float32", always_2d=True)
        return samples, int(source_rate)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        libsndfile_error = str(exc)
    try:
        return _decode_with_ffmpeg(path)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioDecodeError(path, f"cannot decode: libsndfile: {libsndfile_error}; ffmpeg: {exc}") from exc


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg through PyAV, as planar float32 at the native rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        chunks = [
            converted.to_ndarray()
            for frame in container.decode(stream)
            for converted in resampler.resample(frame)
        ]
        chunks += [converted.to_ndarray() for converted in resampler.resample(None)]
        rate = stream.rate
    if not chunks:
        raise ValueError("no audio frames")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1).T, dtype=np.float32), int(rate)


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
