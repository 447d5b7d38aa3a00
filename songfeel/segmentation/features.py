"""SSM-Net's input: a z-scored, compressed log-mel, averaged to ~0.1 s steps and cut into patches.

After G. Peeters, "Self-Similarity-Based and Novelty-based loss for music
structure analysis", ISMIR 2023 (arXiv 2309.02243), section 3.1, with every
parameter from ``conf/segmentation/default.yaml``'s ``features`` (the paper's values
in brackets):

1. mel power spectrogram, :func:`songfeel.features.mel_power` with ``center=True``
   (22050 Hz, 80 bands up to 8 kHz, 2048-sample window, 512-sample hop: 23.2 ms frames);
2. compression ``log(1 + log_gain * mel)`` (``log_gain`` 100);
3. per-band z-score over the whole track;
4. averaging of ``frames_per_step`` consecutive frames into one *step*
   (the whole number of frames nearest below ``step_seconds``: 4 frames,
   92.9 ms, for 0.1 s);
5. patches of ``patch_steps`` steps (the paper's 40 steps, 3.72 s; conf's 20, 1.86 s)
   every ``patch_hop_steps`` steps (5 steps, 0.464 s). One patch is one frame of the
   self-similarity matrix (SSM): the SSM frame rate is ``1 / patch_hop_seconds``
   (2.15 Hz).

Silent audio (no per-band z-score exists) and audio too short for one patch
raise :class:`ValueError`; nothing is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from songfeel.audio import SILENCE_PEAK
from songfeel.features import ConfMapping, mel_power

#: Added to each band's standard deviation before dividing (a constant band z-scores to 0).
_STD_FLOOR = 1e-8

#: Lowest frequency of the mel filterbank, Hz: the paper's bands start at 0 Hz (not a knob of conf).
MEL_FMIN = 0.0


@dataclass(frozen=True)
class StructureFeatureConfig(ConfMapping):
    """Parameters of SSM-Net's front end (arXiv 2309.02243, section 3.1).

    Every field comes from the ``features`` section of ``conf/segmentation/default.yaml``
    (:func:`songfeel.segmentation.config.feature_config`).

    Attributes:
        sample_rate: Hz.
        n_fft: STFT window length, in samples.
        hop_length: STFT hop, in samples (one *frame*).
        n_mels: mel bands.
        fmax: highest mel frequency, Hz.
        log_gain: ``C`` of the compression ``log(1 + C * mel)``.
        step_seconds: target duration of one step, in seconds; the step is the
            whole number of frames that fits in it (at least one).
        patch_steps: steps per patch.
        patch_hop_steps: steps between the starts of consecutive patches.
    """

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmax: float
    log_gain: float
    step_seconds: float
    patch_steps: int
    patch_hop_steps: int


    @property
    def frame_seconds(self) -> float:
        """Duration of one STFT hop, in seconds."""
        return self.hop_length / self.sample_rate

    @property
    def frames_per_step(self) -> int:
        """STFT frames averaged into one step."""
        return max(1, int(np.floor(self.step_seconds / self.frame_seconds + 1e-9)))

    @property
    def step_duration_seconds(self) -> float:
        """Actual duration of one step, in seconds (92.9 ms for 0.1 s steps of 512-sample hops at 22050 Hz)."""
        return self.frames_per_step * self.frame_seconds

    @property
    def patch_seconds(self) -> float:
        """Duration of one patch, in seconds (1.86 s for 20 steps of 92.9 ms)."""
        return self.patch_steps * self.step_duration_seconds

    @property
    def patch_hop_seconds(self) -> float:
        """Time between consecutive patches, in seconds: the SSM frame period (0.464 s for 5 steps of 92.9 ms)."""
        return self.patch_hop_steps * self.step_duration_seconds

    def n_steps(self, n_samples: int) -> int:
        """Whole steps in a signal of ``n_samples`` (``center=True`` frames; a partial last step is dropped)."""
        return (1 + n_samples // self.hop_length) // self.frames_per_step

    def n_patches(self, n_steps: int) -> int:
        """Patches cut from ``n_steps`` steps (0 if fewer than ``patch_steps``)."""
        if n_steps < self.patch_steps:
            return 0
        return 1 + (n_steps - self.patch_steps) // self.patch_hop_steps


def structure_features(audio: np.ndarray, cfg: StructureFeatureConfig) -> np.ndarray:
    """Z-scored ``log(1 + C * mel)`` averaged into steps (arXiv 2309.02243, section 3.1).

    Args:
        audio: mono samples, shape (n_samples,), at ``cfg.sample_rate`` Hz.
        cfg: front-end parameters.

    Returns:
        float32 array of shape (n_steps, n_mels), ``n_steps = cfg.n_steps(n_samples)``;
        step ``s`` averages frames ``s * frames_per_step`` to ``(s + 1) * frames_per_step - 1``.

    Raises:
        ValueError: ``audio`` is not 1-D, holds NaN/Inf, is silent (peak below
            ``songfeel.audio.SILENCE_PEAK``), or is shorter than one patch.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono with shape (n_samples,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf")
    n_steps = cfg.n_steps(audio.shape[0])
    if n_steps < cfg.patch_steps:
        raise ValueError(
            f"audio of {audio.shape[0] / cfg.sample_rate:.2f} s is shorter than one patch "
            f"({cfg.patch_seconds:.2f} s = {cfg.patch_steps} steps of {cfg.step_duration_seconds:.4f} s)"
        )
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise ValueError(f"audio is silent (peak amplitude below {SILENCE_PEAK}): its per-band z-score is undefined")
    mel = mel_power(audio, cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, MEL_FMIN, cfg.fmax,
                    center=True).T.astype(np.float64)
    compressed = np.log1p(cfg.log_gain * mel)
    zscored = (compressed - compressed.mean(axis=0)) / (compressed.std(axis=0) + _STD_FLOOR)
    frames = zscored[: n_steps * cfg.frames_per_step]
    return frames.reshape(n_steps, cfg.frames_per_step, cfg.n_mels).mean(axis=1).astype(np.float32)


def patches(features: np.ndarray, cfg: StructureFeatureConfig) -> np.ndarray:
    """Cut step features into overlapping patches, one per SSM frame.

    Args:
        features: shape (n_steps, n_mels), from :func:`structure_features`.
        cfg: front-end parameters.

    Returns:
        float32 array of shape (n_patches, patch_steps, n_mels); patch ``p`` holds
        steps ``p * patch_hop_steps`` to ``p * patch_hop_steps + patch_steps - 1``.

    Raises:
        ValueError: ``features`` is not 2-D or has fewer than ``patch_steps`` steps.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (n_steps, n_mels), got {features.shape}")
    n_patches = cfg.n_patches(features.shape[0])
    if n_patches == 0:
        raise ValueError(f"{features.shape[0]} steps is shorter than one patch ({cfg.patch_steps} steps)")
    windows = np.lib.stride_tricks.sliding_window_view(features, cfg.patch_steps, axis=0)
    # sliding_window_view puts the window axis last: (n, n_mels, patch_steps) -> (n, patch_steps, n_mels).
    return np.ascontiguousarray(windows[:: cfg.patch_hop_steps][:n_patches].transpose(0, 2, 1))


def patch_times(n_patches: int, cfg: StructureFeatureConfig) -> np.ndarray:
    """Centre time of each patch, in seconds: the time axis of the SSM and the novelty curve.

    The centre is the midpoint between the centres (librosa ``center=True``) of
    the patch's first and last STFT frames.

    Args:
        n_patches: number of patches.
        cfg: front-end parameters.

    Returns:
        float64 array of shape (n_patches,), in seconds.

    Raises:
        ValueError: ``n_patches`` is negative.
    """
    if n_patches < 0:
        raise ValueError(f"n_patches must be >= 0, got {n_patches}")
    first_step = np.arange(n_patches) * cfg.patch_hop_steps
    centre_frame = (first_step + cfg.patch_steps / 2) * cfg.frames_per_step - 0.5
    return centre_frame * cfg.frame_seconds


def step_start_times(n_steps: int, cfg: StructureFeatureConfig) -> np.ndarray:
    """Start time of each step of :func:`structure_features`, in seconds (the first is 0).

    Step ``s`` averages STFT frames ``s * frames_per_step`` onwards; it starts halfway
    between the centre of the previous step's last frame and its own first frame
    (librosa ``center=True``), which is where a change between two steps lies.

    Args:
        n_steps: number of steps.
        cfg: front-end parameters.

    Returns:
        float64 array of shape (n_steps,), in seconds, increasing.

    Raises:
        ValueError: ``n_steps`` is negative.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    starts = (np.arange(n_steps) * cfg.frames_per_step - 0.5) * cfg.frame_seconds
    return np.maximum(starts, 0.0)
