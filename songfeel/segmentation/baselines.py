"""Classic structure-analysis baselines that SSM-Net must beat.

* Foote novelty (J. Foote, "Automatic audio segmentation using a measure of audio
  novelty", ICME 2000): a cosine self-similarity matrix (SSM) of MFCC or log-mel
  frames, correlated along its diagonal with a Gaussian-tapered checkerboard
  kernel; boundaries are the peaks of that novelty curve (:func:`~songfeel.segmentation.peaks.pick_peaks`),
  labels come from clustering the segments' mean features.
* Laplacian segmentation (B. McFee and D. Ellis, "Analyzing song structure with
  spectral clustering", ISMIR 2014), as in librosa's gallery example "Laplacian
  segmentation" (https://librosa.org/doc/latest/auto_examples/plot_segmentation.html):
  a beat-synchronous CQT recurrence graph plus an MFCC path graph, the normalised
  Laplacian's first eigenvectors, and k-means on them.

Both take mono audio at a sample rate and return a
:class:`~songfeel.segmentation.annotations.Segmentation`. Their parameters come from the
``eval.foote`` and ``eval.laplacian`` sections of ``conf/segmentation/default.yaml``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.ndimage
import scipy.sparse.csgraph
import soxr
from sklearn.cluster import KMeans

from songfeel.features import ConfMapping, mel_power
from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.features import (
    StructureFeatureConfig,
    step_start_times,
    structure_features,
)
from songfeel.segmentation.peaks import (
    detect_boundaries,
    label_segments,
    letters_in_order,
)

log = logging.getLogger(__name__)

#: STFT hop (samples) of Laplacian segmentation's beat tracking, CQT and MFCC (librosa's gallery example).
LAPLACIAN_HOP_LENGTH = 512


@dataclass(frozen=True)
class FooteFeatureConfig(ConfMapping):
    """Foote's frame features before pooling: the ``eval.foote.frames`` section of ``conf/segmentation/default.yaml``.

    The log-mel is :func:`songfeel.features.mel_power` (``center=True``) in dB below the
    song's loudest bin (``librosa.power_to_db`` with ``ref=np.max``); the MFCCs are its DCT-II
    (``librosa.feature.mfcc``) without c0, the level.

    Attributes:
        n_fft: STFT window length, in samples.
        hop_length: STFT hop, in samples.
        n_mels: mel bands.
        fmin: lowest mel frequency, Hz.
        fmax: highest mel frequency, Hz (None for half the sample rate).
        amin: power floor before the log.
        top_db: the log-mel is floored this many dB below the song's peak (None: no floor).
        n_mfcc: MFCCs 1..n_mfcc.
    """

    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float | None
    amin: float
    top_db: float | None
    n_mfcc: int


# --- Foote novelty -----------------------------------------------------------------------------


def checkerboard_kernel(size: int, sigma: float) -> np.ndarray:
    """Gaussian-tapered checkerboard kernel (Foote 2000), to correlate along an SSM's diagonal.

    ``K[i, j] = sign(c_i) sign(c_j) exp(-(c_i^2 + c_j^2) / (2 (sigma size / 2)^2))`` with
    ``c = arange(size) - (size - 1) / 2``, scaled so that ``sum |K| = 1``: the
    top-left and bottom-right quadrants (within a segment) are positive, the
    two others (across the boundary) negative. For odd ``size`` the middle row
    and column are 0.

    Args:
        size: side in frames (>= 2); an even size centres the kernel between two frames.
        sigma: the taper's standard deviation as a fraction of half the side
            (``eval.foote.kernel_sigma``, 0.5 as in Müller's FMP notebooks; large values give a flat kernel).

    Returns:
        float64 array of shape (size, size): symmetric, summing to 0, ``sum |K| = 1``.

    Raises:
        ValueError: ``size < 2`` or ``sigma <= 0``.
    """
    if size < 2 or not sigma > 0:
        raise ValueError(f"size must be >= 2 and sigma > 0, got size={size}, sigma={sigma}")
    centred = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taper = np.exp(-0.5 * (centred / (sigma * size / 2.0)) ** 2)
    signed = np.sign(centred) * taper
    kernel = np.outer(signed, signed)
    return kernel / np.abs(kernel).sum()


def novelty_curve(ssm: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate ``kernel`` along the diagonal of ``ssm`` (zero-padded at the song ends).

    Frame ``i``'s value compares frames ``[i - size//2, i + (size+1)//2)``: for an even
    size, a boundary between frames ``i - 1`` and ``i`` peaks at ``i``.

    Args:
        ssm: self-similarity matrix, shape (n_frames, n_frames).
        kernel: square kernel, e.g. :func:`checkerboard_kernel`.

    Returns:
        float64 array of shape (n_frames,).
    """
    size = kernel.shape[0]
    before = size // 2
    padded = np.pad(np.asarray(ssm, dtype=np.float64), ((before, size - before),) * 2)
    n_frames = ssm.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    diagonal = windows[np.arange(n_frames), np.arange(n_frames)]
    return np.einsum("nij,ij->n", diagonal, kernel)


def frame_features(audio: np.ndarray, sample_rate: int, feature: str, hop_seconds: float,
                   frames: FooteFeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """MFCC (without c0) or log-mel frames (:class:`FooteFeatureConfig`) averaged over blocks of ``hop_seconds``.

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz.
        feature: ``"mfcc"`` or ``"logmel"``.
        hop_seconds: the block (frame) period in seconds.
        frames: the frame features' analysis (``eval.foote.frames``).

    Returns:
        features of shape (n_frames, n_dims), standardised per dimension over the
        song, and the frame start times in seconds, shape (n_frames,).

    Raises:
        ValueError: unknown ``feature``.
    """
    if feature not in ("mfcc", "logmel"):
        raise ValueError(f"feature must be 'mfcc' or 'logmel', got {feature!r}")
    mel = mel_power(audio, sample_rate, frames.n_fft, frames.hop_length, frames.n_mels, frames.fmin, frames.fmax,
                    center=True)
    log_mel = librosa.power_to_db(mel, ref=np.max, amin=frames.amin, top_db=frames.top_db)
    values = librosa.feature.mfcc(S=log_mel, n_mfcc=frames.n_mfcc + 1)[1:] if feature == "mfcc" else log_mel
    block = max(1, int(round(hop_seconds * sample_rate / frames.hop_length)))
    starts = np.arange(0, values.shape[1], block)
    pooled = np.add.reduceat(values, starts, axis=1) / np.diff(np.append(starts, values.shape[1]))
    pooled = pooled.T
    pooled = (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-8)
    return pooled, starts * frames.hop_length / sample_rate


def cosine_ssm(features: np.ndarray) -> np.ndarray:
    """Cosine self-similarity of frames mapped to [0, 1]: ``(1 + cos) / 2``, shape (n_frames, n_frames)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    return 0.5 * (1.0 + unit @ unit.T)


def foote_novelty(audio: np.ndarray, sample_rate: int, feature: str, hop_seconds: float, kernel_seconds: float,
                  kernel_sigma: float, frames: FooteFeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foote's novelty curve of one song: frame features, their cosine SSM, a checkerboard along the diagonal.

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz.
        feature: ``"mfcc"`` or ``"logmel"`` (see :func:`frame_features`).
        hop_seconds: SSM frame period, seconds.
        kernel_seconds: side of the checkerboard kernel, seconds (half on each side of a boundary).
        kernel_sigma: the kernel's taper (see :func:`checkerboard_kernel`).
        frames: the frame features' analysis (:func:`frame_features`).

    Returns:
        the novelty curve (n_frames,), the frame start times in seconds (n_frames,) and
        the standardised frame features (n_frames, n_dims).

    Raises:
        ValueError: unknown ``feature``.
    """
    features, times = frame_features(audio, sample_rate, feature, hop_seconds, frames)
    size = max(2, int(round(kernel_seconds / hop_seconds)))
    return novelty_curve(cosine_ssm(features), checkerboard_kernel(size, kernel_sigma)), times, features


def fine_features(audio: np.ndarray, sample_rate: int, cfg: StructureFeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The fine frames that local boundary refinement searches (:func:`~songfeel.segmentation.peaks.refine_boundaries`).

    They are SSM-Net's own input, z-scored ``log(1 + 100 mel)`` steps of about 0.1 s
    (:func:`~songfeel.segmentation.features.structure_features`), so that every method's
    boundaries are refined on the same features.

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz (resampled with soxr to ``cfg.sample_rate`` when it differs).
        cfg: SSM-Net's front end (:class:`~songfeel.segmentation.features.StructureFeatureConfig`).

    Returns:
        features (n_steps, n_mels) and step start times in seconds (n_steps,).

    Raises:
        ValueError: the audio is silent, holds NaN/Inf or is shorter than one patch.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != cfg.sample_rate:
        audio = soxr.resample(audio, sample_rate, cfg.sample_rate, quality="HQ").astype(np.float32)
    steps = structure_features(audio, cfg)
    return steps, step_start_times(len(steps), cfg)


def foote_segmentation(
    audio: np.ndarray,
    sample_rate: int,
    feature: str,
    hop_seconds: float,
    kernel_seconds: float,
    kernel_sigma: float,
    frames: FooteFeatureConfig,
    threshold_ratio: float,
    mean_window_seconds: float,
    min_distance_seconds: float,
    label_distance: float,
    refine: bool,
    local_radius_seconds: float,
    local_window_seconds: float,
    fine_config: StructureFeatureConfig | None,
) -> Segmentation:
    """Foote novelty segmentation of one song, with the settings of ``eval.foote``.

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz.
        feature, hop_seconds, kernel_seconds, kernel_sigma, frames: the novelty curve (:func:`foote_novelty`).
        threshold_ratio, mean_window_seconds, min_distance_seconds, refine: peak picking
            (:func:`~songfeel.segmentation.peaks.pick_peaks`).
        local_radius_seconds, local_window_seconds: local refinement of each boundary on
            :func:`fine_features` (:func:`~songfeel.segmentation.peaks.refine_boundaries`; 0: none).
        label_distance: cosine distance under which segments share a label (:func:`label_segments`).
        fine_config: the front end of :func:`fine_features` (SSM-Net's); None only without local refinement.

    Returns:
        the estimated :class:`Segmentation` (``source="foote"``), covering the whole audio.

    Raises:
        ValueError: unknown ``feature``; with local refinement, no ``fine_config``, or audio too short
            or silent for the fine features.
    """
    novelty, times, features = foote_novelty(audio, sample_rate, feature, hop_seconds, kernel_seconds, kernel_sigma,
                                             frames)
    duration = len(audio) / sample_rate
    fine, starts = None, None
    if local_radius_seconds > 0:
        if fine_config is None:
            raise ValueError("local_radius_seconds > 0 needs fine_config, the front end of the fine features")
        fine, starts = fine_features(audio, sample_rate, fine_config)
    boundaries = detect_boundaries(
        novelty, times, duration, fine, starts, threshold_ratio=threshold_ratio,
        mean_window_seconds=mean_window_seconds, min_distance_seconds=min_distance_seconds, refine=refine,
        local_radius_seconds=local_radius_seconds, local_window_seconds=local_window_seconds)
    labels = label_segments(features, times, boundaries, label_distance)
    return Segmentation.from_boundaries(boundaries, labels, duration, "foote")


# --- Laplacian segmentation (McFee & Ellis 2014) ------------------------------------------------


def laplacian_segmentation(audio: np.ndarray, sample_rate: int, n_segment_types: int, seed: int) -> Segmentation:
    """Laplacian (spectral clustering) segmentation, after McFee & Ellis (2014) and librosa's gallery.

    Steps: beat tracking; beat-synchronous CQT (in dB) and MFCC; a symmetric
    k-nearest-neighbour recurrence affinity of the CQT beats, median-filtered along
    time lags; a path graph linking successive beats by MFCC similarity; their
    combination balanced by degree; the first ``n_segment_types`` eigenvectors of
    its normalised Laplacian, smoothed over 9 beats and row-normalised; k-means.
    Boundaries are the beats where the cluster changes.

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz.
        n_segment_types: number of clusters (distinct labels), ``k`` in the paper (``eval.laplacian``).
        seed: k-means seed (``eval.laplacian``).

    Returns:
        the estimated :class:`Segmentation` (``source="laplacian"``), covering the whole audio.
    """
    duration = len(audio) / sample_rate
    beat_frames = _beats(audio, sample_rate)
    if len(beat_frames) < n_segment_types + 2:
        log.warning("laplacian: only %d beats in %.1f s, one segment returned", len(beat_frames), duration)
        return Segmentation.from_boundaries([], ["A"], duration, "laplacian")
    affinity = _laplacian_affinity(audio, sample_rate, beat_frames)
    cluster_ids = _spectral_clusters(affinity, n_segment_types, seed)
    change = 1 + np.flatnonzero(cluster_ids[:-1] != cluster_ids[1:])
    # beat_frames[0] is frame 0 (fix_frames), so beat b starts at beat_frames[b].
    beat_times = librosa.frames_to_time(beat_frames, sr=sample_rate, hop_length=LAPLACIAN_HOP_LENGTH)
    boundaries = beat_times[change]
    keep = (boundaries > 0) & (boundaries < duration)
    labels = letters_in_order(cluster_ids[np.concatenate([[0], change[keep]])])
    return Segmentation.from_boundaries(boundaries[keep], labels, duration, "laplacian")


def _beats(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat frames (hop 512), with frame 0 prepended, as the start of each beat-synchronous block."""
    _, beats = librosa.beat.beat_track(y=audio, sr=sample_rate, hop_length=LAPLACIAN_HOP_LENGTH, trim=False)
    n_frames = 1 + len(audio) // LAPLACIAN_HOP_LENGTH  # frames of the centred CQT and MFCC
    return librosa.util.fix_frames(beats[beats < n_frames], x_min=0)


def _laplacian_affinity(audio: np.ndarray, sample_rate: int, beat_frames: np.ndarray) -> np.ndarray:
    """McFee & Ellis's combined graph: ``mu * R' + (1 - mu) * Delta``, shape (n_beats, n_beats)."""
    bins_per_octave = 36
    n_octaves = min(7, int(np.floor(np.log2(0.9 * sample_rate / 2 / librosa.note_to_hz("C1")))))
    cqt = librosa.amplitude_to_db(np.abs(librosa.cqt(
        y=audio, sr=sample_rate, hop_length=LAPLACIAN_HOP_LENGTH,
        bins_per_octave=bins_per_octave, n_bins=n_octaves * bins_per_octave)), ref=np.max)
    cqt_beats = librosa.util.sync(cqt, beat_frames, aggregate=np.median)
    recurrence = librosa.segment.recurrence_matrix(cqt_beats, width=3, mode="affinity", sym=True)
    # Median filtering along time lags keeps diagonal (repeated-sequence) structure.
    recurrence = librosa.segment.timelag_filter(scipy.ndimage.median_filter)(recurrence, size=(1, 7))
    mfcc = librosa.feature.mfcc(y=audio, sr=sample_rate, hop_length=LAPLACIAN_HOP_LENGTH)
    mfcc_beats = librosa.util.sync(mfcc, beat_frames)
    step = np.sum(np.diff(mfcc_beats, axis=1) ** 2, axis=0)
    path_similarity = np.exp(-step / max(float(np.median(step)), 1e-12))
    path = np.diag(path_similarity, k=1) + np.diag(path_similarity, k=-1)
    degree_path, degree_recurrence = path.sum(axis=1), recurrence.sum(axis=1)
    # mu balances the two graphs' degrees (McFee & Ellis 2014; librosa's Laplacian segmentation example).
    total = degree_path + degree_recurrence
    mu = degree_path.dot(total) / np.sum(total**2)
    return mu * recurrence + (1 - mu) * path


def _spectral_clusters(affinity: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means on the first ``n_clusters`` normalised-Laplacian eigenvectors, one id per beat."""
    laplacian = scipy.sparse.csgraph.laplacian(affinity, normed=True)
    _, eigenvectors = np.linalg.eigh(laplacian)
    eigenvectors = scipy.ndimage.median_filter(eigenvectors, size=(9, 1))
    cumulative_norm = np.sqrt(np.cumsum(eigenvectors**2, axis=1))
    embedding = eigenvectors[:, :n_clusters] / (cumulative_norm[:, n_clusters - 1 : n_clusters] + 1e-12)
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(embedding)
