"""Random augmentation of cached log-mel crops (numpy in, numpy out).

Training crops come out of the feature store as log-mel spectrograms of shape
``(n_frames, n_mels)``, float32, in dB (:func:`songfeel.features.log_mel`).
:class:`LogMelAugment` perturbs them so that the embedding does not depend on
things that do not change how a song feels:

* how MECOMP decodes: its downmix is ``(L + R) * sqrt(2) / 2``, +3.01 dB against
  our channel mean (:func:`songfeel.audio.mecomp_downmix`), and its resampler is
  rubato's cubic polynomial without an anti-aliasing filter
  (:func:`songfeel.audio.cubic_resample`): a level offset and, from aliasing,
  more energy in the top bands (on the 48 kHz demo tracks, after removing the
  3 dB: under 0.1 dB below 5 kHz, +0.7 dB at 7 kHz, +2.4 dB at 9-10 kHz and
  +7 dB in the top band, 10.5 kHz);
* how a track was recorded, mastered and encoded: level, spectral balance
  (tilt), the low-pass of lossy codecs, small differences of tuning and tempo.

Every augmentation works on the log-mel itself, so it costs far less than a
millisecond per crop and needs no audio. They are the spectrogram-domain
counterparts of the audio deformations of McFee, Humphrey & Bello, "A software
framework for musical data augmentation", ISMIR 2015 (muda: pitch shift, time
stretch, background noise, dynamic range compression, impulse responses; its
issue #1 lists low-pass filtering and resampling without an anti-aliasing filter
as further deformations of the same kind), in the spirit of
SpecAugment (Park et al., "SpecAugment: A Simple Data Augmentation Method for
Automatic Speech Recognition", Interspeech 2019), which warps and masks the
log-mel directly. Pitch shifting and time stretching by interpolation of the
log-mel follow Schlüter & Grill, "Exploring data augmentation for improved
singing voice detection with neural networks", ISMIR 2015.

Each function below is deterministic; :class:`LogMelAugment` draws their
parameters from a :class:`numpy.random.Generator`. None of them modifies its
input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import librosa
import numpy as np

from songfeel.features import FeatureConfig

__all__ = [
    "LogMelAugment",
    "apply_gain",
    "band_centres",
    "lowpass",
    "pitch_shift",
    "spectral_tilt",
    "time_stretch",
]


@functools.lru_cache(maxsize=16)
def _band_centres(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    centres = librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax)[1:-1]
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    centres.setflags(write=False)
    return centres


def band_centres(features: FeatureConfig) -> np.ndarray:
    """Centre frequencies of the mel bands of ``features``, in Hz.

    The peaks of the triangular filters of :func:`songfeel.features.mel_filterbank`
    (librosa's Slaney mel scale): ``librosa.mel_frequencies(n_mels + 2, fmin, fmax)[1:-1]``.

    Returns:
        read-only float64 array of shape (n_mels,), increasing.
    """
    fmax = features.sample_rate / 2.0 if features.fmax is None else float(features.fmax)
    return _band_centres(int(features.n_mels), float(features.fmin), fmax)


def _check_frames(frames: np.ndarray, n_mels: int | None = None) -> np.ndarray:
    """``frames`` as a float32 array of shape (n_frames >= 1, n_mels); ValueError otherwise."""
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[0] < 1 or frames.shape[1] < 1:
        raise ValueError(f"frames must have shape (n_frames >= 1, n_mels >= 1), got {frames.shape}")
    if n_mels is not None and frames.shape[1] != n_mels:
        raise ValueError(f"frames have {frames.shape[1]} mel bands, the feature config {n_mels}")
    return frames.astype(np.float32, copy=False)


def apply_gain(frames: np.ndarray, gain_db: float) -> np.ndarray:
    """Add ``gain_db`` to every value: a change of playback or mastering level.

    Args:
        frames: log-mel, shape (n_frames, n_mels), dB.
        gain_db: gain in dB (MECOMP's stereo downmix is +3.01 dB against ours).

    Returns:
        a new float32 array of the same shape. The silence floor moves with the
        gain, as it does in :func:`songfeel.sampler.random_crop`.

    Raises:
        ValueError: ``frames`` is not 2-D or is empty.
    """
    frames = _check_frames(frames)
    return frames + np.float32(gain_db)


def spectral_tilt(frames: np.ndarray, tilt_db: float) -> np.ndarray:
    """Add a linear ramp across the mel bands: a gentle equaliser or microphone/room colouring.

    Band ``b`` of ``n_mels`` gets ``tilt_db * (b / (n_mels - 1) - 0.5)`` dB, so the
    highest band ends ``tilt_db`` above the lowest and the mean level across bands is unchanged.

    Args:
        frames: log-mel, shape (n_frames, n_mels), dB.
        tilt_db: dB from the lowest to the highest band (negative: darker).

    Returns:
        a new float32 array of the same shape.

    Raises:
        ValueError: ``frames`` is not 2-D or is empty.
    """
    return _tilt_inplace(_check_frames(frames).copy(), tilt_db)


def _tilt_inplace(frames: np.ndarray, tilt_db: float) -> np.ndarray:
    n_mels = frames.shape[1]
    if n_mels > 1:
        frames += (np.linspace(-0.5, 0.5, n_mels) * float(tilt_db)).astype(np.float32)
    return frames


def lowpass(frames: np.ndarray, cutoff_hz: float, db_per_octave: float, features: FeatureConfig) -> np.ndarray:
    """Attenuate the bands above ``cutoff_hz`` like the low-pass of a lossy codec.

    A band whose centre ``f`` (:func:`band_centres`) lies above the cutoff loses
    ``db_per_octave * log2(f / cutoff_hz)`` dB, but never goes below the silence
    floor ``features.silence_db`` (a value already under the floor is kept).
    Bands at or below the cutoff are returned unchanged, bit for bit.

    Args:
        frames: log-mel, shape (n_frames, features.n_mels), dB.
        cutoff_hz: the cutoff, Hz (> 0).
        db_per_octave: slope of the attenuation, dB per octave (>= 0).
        features: the front end that computed ``frames``.

    Returns:
        a new float32 array of the same shape.

    Raises:
        ValueError: bad shape, ``cutoff_hz <= 0`` or ``db_per_octave < 0``.
    """
    frames = _check_frames(frames, features.n_mels)
    if not cutoff_hz > 0:
        raise ValueError(f"cutoff_hz must be > 0, got {cutoff_hz}")
    if not db_per_octave >= 0:
        raise ValueError(f"db_per_octave must be >= 0, got {db_per_octave}")
    return _lowpass_inplace(frames.copy(), cutoff_hz, db_per_octave, features)


def _lowpass_inplace(frames: np.ndarray, cutoff_hz: float, db_per_octave: float,
                     features: FeatureConfig) -> np.ndarray:
    centres = band_centres(features)
    octaves = np.log2(np.maximum(centres / float(cutoff_hz), 1.0))
    attenuation = (float(db_per_octave) * octaves).astype(np.float32)
    first = len(attenuation) - int(np.count_nonzero(attenuation > 0))  # bands from here on are attenuated
    if first < len(attenuation):
        high = frames[:, first:]
        # Attenuate by min(attenuation, headroom above the floor): never below the floor, nothing under it moves.
        headroom = high - np.float32(features.silence_db)
        np.maximum(headroom, np.float32(0.0), out=headroom)
        np.minimum(headroom, attenuation[first:], out=headroom)
        high -= headroom
    return frames


def pitch_shift(frames: np.ndarray, semitones: float, features: FeatureConfig) -> np.ndarray:
    """Shift the spectrum along frequency by ``semitones`` (positive: up).

    The new value of the band centred on ``f`` is the old log-mel linearly
    interpolated at ``f / 2 ** (semitones / 12)`` on the axis of band-centre
    frequencies (:func:`band_centres`, Hz). A query outside the centres takes
    the value of the nearest edge band (as :func:`numpy.interp` does): below the
    lowest centre the spectrum is nearly flat, and above the highest one the
    source audio had content the front end cut off, so the silence floor there
    would be an artefact that erases the top band at any downward shift.
    A log-mel approximation of muda's ``PitchShift`` (it moves the spectral
    envelope with the partials, and ignores the mel filters' changing widths).

    Args:
        frames: log-mel, shape (n_frames, features.n_mels), dB.
        semitones: the shift, in semitones.
        features: the front end that computed ``frames``.

    Returns:
        a new float32 array of the same shape; 0 semitones returns an exact copy.

    Raises:
        ValueError: bad shape or a non-finite ``semitones``.
    """
    frames = _check_frames(frames, features.n_mels)
    if not math.isfinite(semitones):
        raise ValueError(f"semitones must be finite, got {semitones}")
    if semitones == 0 or frames.shape[1] == 1:
        return frames.copy()
    centres = band_centres(features)
    query = np.clip(centres / 2.0 ** (float(semitones) / 12.0), centres[0], centres[-1])
    low = np.clip(np.searchsorted(centres, query, side="right") - 1, 0, len(centres) - 2)
    weight = ((query - centres[low]) / (centres[low + 1] - centres[low])).astype(np.float32)
    # out = below + weight * (above - below), in place (no BLAS: no thread pool in DataLoader workers).
    out, step = np.take(frames, low, axis=1), np.take(frames, low + 1, axis=1)
    step -= out
    step *= weight
    out += step
    return out


def time_stretch(frames: np.ndarray, rate: float) -> np.ndarray:
    """Change the tempo by ``rate`` (> 1: faster, fewer frames) by linear interpolation along time.

    The output has ``max(1, round(n_frames / rate))`` frames; output frame ``j``
    is the input interpolated at ``j * (n_frames - 1) / (n_out - 1)``, so the
    first and last frames are kept. The log-mel counterpart of muda's
    ``TimeStretch`` (a phase vocoder keeps the pitch; so does stretching the
    spectrogram's time axis).

    Args:
        frames: log-mel, shape (n_frames, n_mels), dB.
        rate: tempo factor (> 0).

    Returns:
        a new float32 array of shape (n_out, n_mels); an exact copy when ``n_out == n_frames``.

    Raises:
        ValueError: bad shape or ``rate <= 0``.
    """
    frames = _check_frames(frames)
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be finite and > 0, got {rate}")
    n_frames = frames.shape[0]
    n_out = max(1, int(round(n_frames / float(rate))))
    if n_out == n_frames:
        return frames.copy()
    if n_frames == 1:
        return np.repeat(frames, n_out, axis=0)
    if n_out == 1:
        return frames[:1].copy()
    position = np.arange(n_out, dtype=np.float64) * ((n_frames - 1) / (n_out - 1))
    low = np.minimum(position.astype(np.int64), n_frames - 2)
    weight = (position - low).astype(np.float32)[:, None]
    out, step = frames[low], frames[low + 1]  # out = before + weight * (after - before), in place
    step -= out
    step *= weight
    out += step
    return out


def _pair(name: str, value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a pair of numbers [low, high], got {value!r}") from exc
    return low, high


@dataclass(frozen=True)
class LogMelAugment:
    """Random gain, pitch shift, tempo change, codec low-pass and spectral tilt of a log-mel crop.

    Call it as ``augment(frames, rng)`` (the ``Augment`` of :mod:`songfeel.sampler`).
    Each call draws, in this order and only for the augmentations that are on:

    1. a tempo factor ``r ~ U(tempo_range)``: :func:`time_stretch` (the output has
       ``round(n_frames / r)`` frames);
    2. a shift ``s ~ U(-pitch_semitones, pitch_semitones)``: :func:`pitch_shift`;
    3. a tilt ``t ~ U(-tilt_db, tilt_db)``: :func:`spectral_tilt`;
    4. with probability ``lowpass_probability``, a cutoff ``c ~ U(lowpass_hz)``:
       :func:`lowpass` at ``lowpass_db_per_octave``;
    5. a gain ``g ~ U(-gain_db, gain_db)``: :func:`apply_gain`.

    An augmentation whose range is zero (``gain_db=0``, ``pitch_semitones=0``,
    ``tilt_db=0``, ``tempo_range=(1, 1)``, ``lowpass_probability=0`` or
    ``lowpass_db_per_octave=0``) is skipped and draws nothing; with all of them
    off the call returns an exact float32 copy of its input.

    Attributes:
        gain_db: gain range, +/- dB (>= 0).
        pitch_semitones: pitch shift range, +/- semitones (>= 0).
        tempo_range: (low, high) tempo factor, 0 < low <= high.
        lowpass_probability: share of crops that are low-passed, in [0, 1].
        lowpass_hz: (low, high) cutoff range in Hz, 0 < low <= high.
        lowpass_db_per_octave: low-pass slope, dB per octave above the cutoff (>= 0).
        tilt_db: tilt range, +/- dB from the lowest to the highest band (>= 0).
        features: the front end that computed the log-mel (band frequencies, silence floor).

    Raises:
        ValueError: at construction, naming the field that is out of range.
    """

    gain_db: float
    pitch_semitones: float
    tempo_range: tuple[float, float]
    lowpass_probability: float
    lowpass_hz: tuple[float, float]
    lowpass_db_per_octave: float
    tilt_db: float
    features: FeatureConfig

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise ValueError(f"features must be a FeatureConfig, got {type(self.features).__name__}")
        for name in ("gain_db", "pitch_semitones", "lowpass_probability", "lowpass_db_per_octave", "tilt_db"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be a number, got {value!r}") from exc
            if isinstance(value, bool) or not math.isfinite(number) or number < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, number)
        if self.lowpass_probability > 1:
            raise ValueError(f"lowpass_probability must be in [0, 1], got {self.lowpass_probability}")
        for name in ("tempo_range", "lowpass_hz"):
            low, high = _pair(name, getattr(self, name))
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"{name} must satisfy 0 < low <= high (finite), got [{low}, {high}]")
            object.__setattr__(self, name, (low, high))

    @classmethod
    def from_mapping(cls, mapping: Mapping, features: FeatureConfig | Mapping) -> "LogMelAugment":
        """Build from a dict or an OmegaConf node (``cfg.augment`` of ``conf/augment/*.yaml``).

        Args:
            mapping: every field except ``features``; lists become tuples.
            features: the feature config (or a mapping for :meth:`FeatureConfig.from_mapping`).

        Raises:
            ValueError: a missing key or an unknown one (most likely a typo; both are named),
                or a value out of range.
        """
        known = {f.name for f in fields(cls)} - {"features"}
        keys = [str(k) for k in mapping.keys()]
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(f"unknown augmentation setting(s) {unknown}; expected {sorted(known)}")
        missing = sorted(known - set(keys))
        if missing:
            raise ValueError(f"augmentation setting(s) {missing} missing; conf/augment/*.yaml sets every one")
        if not isinstance(features, FeatureConfig):
            features = FeatureConfig.from_mapping(features)
        return cls(features=features, **{key: mapping[key] for key in keys})

    @property
    def is_identity(self) -> bool:
        """True when every augmentation is off (calls return a copy of their input)."""
        return (
            self.gain_db == 0
            and self.pitch_semitones == 0
            and self.tilt_db == 0
            and self.tempo_range == (1.0, 1.0)
            and (self.lowpass_probability == 0 or self.lowpass_db_per_octave == 0)
        )

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one crop.

        Args:
            frames: log-mel, shape (n_frames >= 1, features.n_mels), dB.
            rng: the source of every random draw (same seed, same output).

        Returns:
            a new float32 array of shape (n_frames', features.n_mels), with
            ``n_frames' = max(1, round(n_frames / r))`` for the drawn tempo ``r``.

        Raises:
            ValueError: ``frames`` has the wrong shape.
        """
        frames = _check_frames(frames, self.features.n_mels)
        out = frames
        low, high = self.tempo_range
        if low != 1.0 or high != 1.0:
            out = time_stretch(out, float(rng.uniform(low, high)))
        if self.pitch_semitones > 0:
            out = pitch_shift(out, float(rng.uniform(-self.pitch_semitones, self.pitch_semitones)), self.features)
        if out is frames:  # from here on ``out`` is changed in place: never the caller's array
            out = frames.copy()
        if self.tilt_db > 0:
            _tilt_inplace(out, float(rng.uniform(-self.tilt_db, self.tilt_db)))
        if self.lowpass_probability > 0 and self.lowpass_db_per_octave > 0:
            if rng.random() < self.lowpass_probability:
                cutoff = float(rng.uniform(*self.lowpass_hz))
                _lowpass_inplace(out, cutoff, self.lowpass_db_per_octave, self.features)
        if self.gain_db > 0:
            out += np.float32(rng.uniform(-self.gain_db, self.gain_db))
        return out
