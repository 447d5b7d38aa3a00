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
    return _load(path, sample_rate, min_seconds, allow_silence, downmix, _soxr_resample)


def _soxr_resample(mono: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return mono
    return soxr.resample(mono, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def _load(path, sample_rate: int, min_seconds: float, allow_silence: bool, to_mono, resample) -> np.ndarray:
    """Decode, downmix with ``to_mono``, check, resample with ``resample(mono, source_rate, sample_rate)``, check."""
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    samples, source_rate = decode(path)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise AudioDecodeError(path, "no audio frames")
    mono = to_mono(samples)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(path, "decoded samples contain NaN or Inf")
    mono = resample(mono, source_rate, sample_rate)
    duration = mono.shape[0] / sample_rate
    if duration < min_seconds:
        raise AudioTooShortError(path, f"lasts {duration:.2f} s, less than the {min_seconds:.2f} s needed")
    if not allow_silence and (mono.shape[0] == 0 or float(np.abs(mono).max()) < SILENCE_PEAK):
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


# --- Decoding as MECOMP does -------------------------------------------------------------------
#
# MECOMP (mecomp-analysis, ``analysis/src/decoder/mecomp.rs``) decodes with symphonia, downmixes
# stereo as (L + R) * sqrt(2) / 2 and resamples to 22050 Hz with rubato's ``FastFixedIn`` and
# ``PolynomialDegree::Cubic`` (https://docs.rs/rubato): a 4-point cubic (Lagrange) polynomial through
# the input samples around each output instant, with no anti-aliasing filter. The functions below
# reproduce the downmix and the resampler in numpy so that training can see, and tests can measure,
# what MECOMP's input looks like.

#: Points of rubato's polynomial buffer (``POLYNOMIAL_LEN`` of rubato 0.15/0.16 ``asynchro_fast.rs``).
_RUBATO_POLYNOMIAL_LEN = 8

#: Output samples computed per block in :func:`cubic_resample` (keeps the temporaries in cache).
_RESAMPLE_BLOCK = 1 << 16


def mecomp_downmix(samples: np.ndarray) -> np.ndarray:
    """Mix ``samples`` down to mono the way MECOMP does.

    * mono: unchanged;
    * stereo: ``(L + R) * sqrt(2) / 2`` in float32, as ``MecompDecoder::into_mono_samples``
      (FFmpeg's stereo-to-mono matrix): exactly sqrt(2) times :func:`downmix`'s mean,
      +3.01 dB;
    * more channels: the plain mean of the channels, ``sum / n_channels``, which is
      what MECOMP's code does for 2.1 / 5.1 sources (without the sqrt(2) of stereo; its
      source carries a TODO to match FFmpeg there).

    Args:
        samples: audio of shape (n_samples, n_channels) or (n_samples,).

    Returns:
        float32 array of shape (n_samples,).

    Raises:
        ValueError: ``samples`` has no channels or more than two dimensions.
    """
    samples = np.asarray(samples)
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f"samples must have shape (n_samples, n_channels >= 1), got {samples.shape}")
    samples = samples.astype(np.float32, copy=False)
    n_channels = samples.shape[1]
    if n_channels == 1:
        return np.ascontiguousarray(samples[:, 0])
    if n_channels == 2:
        mono = samples[:, 0] + samples[:, 1]
        mono *= np.float32(np.sqrt(2.0))
        mono /= np.float32(2.0)  # (L + R) * SQRT_2 / 2, in MECOMP's order of float32 operations
        return mono
    return samples.sum(axis=1, dtype=np.float32) / np.float32(n_channels)


def cubic_resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono audio as rubato's cubic ``FastFixedIn`` does in MECOMP.

    Output sample ``k`` is the cubic polynomial through the four input samples
    ``x[i - 1], x[i], x[i + 1], x[i + 2]`` (Lagrange interpolation at nodes -1, 0, 1, 2,
    rubato's ``interp_cubic``), evaluated at ``t = p - i`` with ``i = floor(p)`` and
    ``p = p0 + k * source_rate / target_rate``; samples outside the input are 0.
    There is no anti-aliasing filter: when downsampling, content above the new
    Nyquist frequency folds back (weakly: the cubic kernel is itself a mild low-pass).

    The phase ``p0`` reproduces rubato 0.15/0.16 with MECOMP's trimming of the
    resampler's delay: rubato starts at input index ``-POLYNOMIAL_LEN / 2 = -4``
    and MECOMP drops the first ``output_delay = floor(4 * target_rate / source_rate)``
    outputs, so ``p0 = (output_delay + 1) * source_rate / target_rate - 4``, between 0 and
    one output period (0.354 input samples for 48 kHz to 22050 Hz; 2 for 44.1 kHz).
    The length is ``n_samples * target_rate // source_rate``, as in MECOMP.
    Computed in float32 like rubato's ``f32`` resampler, so the result agrees with it to
    float32 rounding (from reading rubato's source; not compared with the Rust binary).

    Args:
        samples: mono audio, shape (n_samples,).
        source_rate: its sample rate, Hz.
        target_rate: the wanted sample rate, Hz.

    Returns:
        float32 array of shape (n_samples * target_rate // source_rate,); a copy of
        ``samples`` when the rates are equal (MECOMP does not resample then).

    Raises:
        ValueError: ``samples`` is not 1-D, or a rate is not a positive integer.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be mono, shape (n_samples,), got {samples.shape}")
    for name, rate in (("source_rate", source_rate), ("target_rate", target_rate)):
        if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
            raise ValueError(f"{name} must be a positive integer (Hz), got {rate!r}")
    source_rate, target_rate = int(source_rate), int(target_rate)
    samples = samples.astype(np.float32, copy=False)
    if source_rate == target_rate:
        return samples.copy()
    n_out = samples.shape[0] * target_rate // source_rate
    step = source_rate / target_rate
    delay = int(_RUBATO_POLYNOMIAL_LEN * (target_rate / source_rate) / 2.0)
    start = (delay + 1) * step - _RUBATO_POLYNOMIAL_LEN / 2
    # Zeros around the input (rubato's zero-filled buffer and zero-padded last chunk); index 0 is input -pad.
    pad = 4
    padded = np.zeros(samples.shape[0] + 2 * pad + int(np.ceil(start + step)) + 2, dtype=np.float32)
    padded[pad : pad + samples.shape[0]] = samples
    out = np.empty(n_out, dtype=np.float32)
    third, sixth = np.float32(1.0 / 3.0), np.float32(1.0 / 6.0)
    for first in range(0, n_out, _RESAMPLE_BLOCK):
        position = start + np.arange(first, min(first + _RESAMPLE_BLOCK, n_out), dtype=np.float64) * step
        floor = np.floor(position)
        x = (position - floor).astype(np.float32)
        index = floor.astype(np.int64) + (pad - 1)  # the node at -1
        y0, y1, y2, y3 = padded[index], padded[index + 1], padded[index + 2], padded[index + 3]
        # rubato's interp_cubic, term by term and in its order of float32 operations.
        a1 = -third * y0 - np.float32(0.5) * y1 + y2 - sixth * y3
        a2 = np.float32(0.5) * (y0 + y2) - y1
        a3 = np.float32(0.5) * (y1 - y2) + sixth * (y3 - y0)
        x2 = x * x
        out[first : first + len(x)] = y1 + a1 * x + a2 * x2 + a3 * (x2 * x)
    return out


def load_audio_like_mecomp(
    path: str | Path,
    sample_rate: int = MECOMP_SAMPLE_RATE,
    min_seconds: float = 0.0,
    allow_silence: bool = False,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` the way MECOMP prepares audio for analysis.

    The same decoders as :func:`load_audio` (libsndfile, else FFmpeg; MECOMP uses
    symphonia, so codec delay and padding may differ by a few ms), then
    :func:`mecomp_downmix` (stereo +3.01 dB against :func:`load_audio`) and
    :func:`cubic_resample` (rubato's cubic polynomial, no anti-aliasing) instead
    of the channel mean and soxr.

    Args:
        path: an audio file.
        sample_rate: target sample rate in Hz.
        min_seconds: shortest duration accepted, in seconds.
        allow_silence: if False, a silent track raises :class:`SilentAudioError`.

    Returns:
        float32 array of shape (n_samples * sample_rate // source_rate,).

    Raises:
        AudioDecodeError: the file is missing, corrupt, empty or holds NaN/Inf.
        AudioTooShortError: it lasts less than ``min_seconds``.
        SilentAudioError: it is digital silence and ``allow_silence`` is False.
    """
    return _load(path, sample_rate, min_seconds, allow_silence, mecomp_downmix, cubic_resample)
