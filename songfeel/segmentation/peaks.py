"""From a novelty curve to boundaries, and from segments to labels.

Peak picking as in Foote (2000) and SSM-Net (Peeters 2023): a boundary
is a local maximum of the novelty curve that rises above ``threshold_ratio``
times the curve's local mean, at least ``min_distance_seconds`` away from a
higher peak and from the song's ends (the ends are segment edges, not boundaries).
Every setting comes from a peak-picking section of ``conf/segmentation/default.yaml``
(``eval.ssmnet``, ``eval.foote``; :func:`peak_settings`).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

log = logging.getLogger(__name__)


def pick_peaks(
    novelty: np.ndarray,
    times: np.ndarray,
    threshold_ratio: float,
    mean_window_seconds: float,
    min_distance_seconds: float,
    refine: bool,
) -> np.ndarray:
    """Boundary times (seconds) from a novelty curve.

    A frame ``i`` is a candidate when ``novelty[i]`` is a local maximum (a flat top counts once, at
    its middle), positive, above ``threshold_ratio`` times the mean of the curve over
    ``mean_window_seconds`` centred on it, and at least ``min_distance_seconds`` from the first and
    last frame times (the song ends are never boundaries). Candidates are kept from the highest down,
    dropping any closer than ``min_distance_seconds`` to a kept one: :func:`scipy.signal.find_peaks`
    with a per-frame ``height`` and a ``distance`` (frames on a uniform grid).

    With ``refine``, each kept peak moves to the vertex of the parabola through it
    and its two neighbours (quadratic interpolation, as for spectral peaks:
    J. O. Smith, *Spectral Audio Signal Processing*, "Quadratic Interpolation of
    Spectral Peaks", https://ccrma.stanford.edu/~jos/sasp/), at most half a frame
    away, so that boundaries are not quantised to the frame grid.

    Args:
        novelty: novelty curve, shape (n_frames,).
        times: frame times in seconds, increasing, shape (n_frames,).
        threshold_ratio: how far above its local mean a peak must rise (1 = the mean itself).
        mean_window_seconds: width of the local-mean window, seconds.
        min_distance_seconds: least distance between two boundaries, and between a
            boundary and a song end, seconds.
        refine: interpolate each peak's time between frames.

    Returns:
        float64 array of boundary times in seconds, increasing (possibly empty).

    Raises:
        ValueError: ``novelty`` and ``times`` differ in shape or are not 1-D.
    """
    novelty = np.asarray(novelty, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if novelty.ndim != 1 or novelty.shape != times.shape:
        raise ValueError(f"novelty {novelty.shape} and times {times.shape} must be 1-D and of equal shape")
    if novelty.size < 3:
        return np.empty(0)
    hop = float(np.median(np.diff(times)))
    # scipy.signal.find_peaks keeps the local maxima above ``height`` (here: strictly above 0 and above
    # threshold_ratio times the local mean; never within min_distance_seconds of a song end), then drops
    # the lower of any two closer than ``distance`` frames, highest first.
    local_mean = uniform_filter1d(novelty, size=max(1, int(round(mean_window_seconds / hop))), mode="nearest")
    height = np.nextafter(np.maximum(threshold_ratio * local_mean, 0.0), np.inf)
    height[(times - times[0] < min_distance_seconds) | (times[-1] - times < min_distance_seconds)] = np.inf
    kept, _ = find_peaks(novelty, height=height, distance=max(1.0, min_distance_seconds / hop - 1e-9))
    if not refine:
        return times[kept].astype(np.float64)
    return np.sort(np.array([_parabolic_time(novelty, times, i) for i in kept], dtype=np.float64))


#: Keys of a peak-picking section (``eval.ssmnet``, ``eval.foote``) that :func:`detect_boundaries` reads,
#: with their types.
PEAK_TYPES = {"threshold_ratio": float, "mean_window_seconds": float, "min_distance_seconds": float,
              "refine": bool, "local_radius_seconds": float, "local_window_seconds": float}
PEAK_KEYS = tuple(PEAK_TYPES)


def refine_boundaries(
    boundaries: np.ndarray,
    features: np.ndarray,
    starts: np.ndarray,
    radius_seconds: float,
    window_seconds: float,
) -> np.ndarray:
    """Move each boundary to the sharpest local change of fine frame features nearby.

    A coarse novelty curve (SSM frames of 0.46 s, Foote frames of 0.5 s, both seen
    through kernels many seconds wide) finds *where* a section changes to within a
    few seconds but places it loosely. Here each boundary ``b`` moves to the frame
    start ``t`` within ``radius_seconds`` of ``b`` where the mean feature vector of
    the ``window_seconds`` before ``t`` and that of the ``window_seconds`` after it
    lie furthest apart (Euclidean): a two-window change detector, i.e. Foote's
    novelty with a small box checkerboard (J. Foote, ICME 2000) searched only near
    the coarse peak. A boundary with no candidate (too near a song end) stays put;
    boundaries that land on the same frame merge.

    Args:
        boundaries: boundary times in seconds, shape (n_boundaries,).
        features: fine frame features, e.g. the z-scored log-mel steps of
            :func:`~songfeel.segmentation.features.structure_features`, shape (n_frames, n_dims).
        starts: start time of each frame in seconds, increasing, shape (n_frames,).
        radius_seconds: how far a boundary may move, seconds (0 returns them unchanged).
        window_seconds: length of each of the two windows, seconds (at least one frame).

    Returns:
        float64 array of refined boundary times in seconds, increasing, without repeats.

    Raises:
        ValueError: ``features`` is not 2-D, ``starts`` does not match its frames, or a
            length is negative.
    """
    boundaries = np.asarray(boundaries, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.float64)
    if features.ndim != 2 or starts.shape != (features.shape[0],):
        raise ValueError(f"features {features.shape} must be (n_frames, n_dims) and starts {starts.shape} (n_frames,)")
    if radius_seconds < 0 or window_seconds < 0:
        raise ValueError(f"radius_seconds ({radius_seconds}) and window_seconds ({window_seconds}) must be >= 0")
    if radius_seconds == 0 or boundaries.size == 0 or features.shape[0] < 2:
        return np.unique(boundaries)
    hop = float(np.median(np.diff(starts)))
    width = max(1, int(round(window_seconds / hop)))
    cumulative = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features, axis=0)])
    frames = np.arange(features.shape[0])
    moved = []
    for boundary in boundaries:
        candidates = frames[(np.abs(starts - boundary) <= radius_seconds) & (frames >= width)
                            & (frames <= features.shape[0] - width)]
        if candidates.size == 0:
            moved.append(boundary)
            continue
        before = (cumulative[candidates] - cumulative[candidates - width]) / width
        after = (cumulative[candidates + width] - cumulative[candidates]) / width
        moved.append(starts[candidates[np.argmax(np.linalg.norm(after - before, axis=1))]])
    return np.unique(np.asarray(moved, dtype=np.float64))


def detect_boundaries(
    novelty: np.ndarray,
    times: np.ndarray,
    duration: float,
    fine_features: np.ndarray | None,
    fine_starts: np.ndarray | None,
    *,
    threshold_ratio: float,
    mean_window_seconds: float,
    min_distance_seconds: float,
    refine: bool,
    local_radius_seconds: float,
    local_window_seconds: float,
) -> np.ndarray:
    """Boundaries of one song: :func:`pick_peaks`, then :func:`refine_boundaries`, inside ``(0, duration)``.

    Args:
        novelty, times: the novelty curve and its frame times in seconds, shape (n_frames,).
        duration: the song's length in seconds; boundaries outside ``(0, duration)`` are dropped.
        fine_features, fine_starts: fine frame features (n_fine, n_dims) and their start
            times in seconds (n_fine,), needed when ``local_radius_seconds > 0`` (else None).
        threshold_ratio, mean_window_seconds, min_distance_seconds, refine: :func:`pick_peaks`.
        local_radius_seconds, local_window_seconds: :func:`refine_boundaries` (0: no local refinement).

    Returns:
        float64 array of boundary times in seconds, increasing.

    Raises:
        ValueError: local refinement is asked for without fine features, or the inputs are malformed.
    """
    boundaries = pick_peaks(novelty, times, threshold_ratio, mean_window_seconds, min_distance_seconds, refine)
    if local_radius_seconds > 0:
        if fine_features is None or fine_starts is None:
            raise ValueError("local_radius_seconds > 0 needs fine_features and fine_starts")
        boundaries = refine_boundaries(boundaries, fine_features, fine_starts, local_radius_seconds,
                                       local_window_seconds)
    return boundaries[(boundaries > 0) & (boundaries < duration)]


def peak_settings(section: Mapping) -> dict:
    """The :data:`PEAK_KEYS` of a config section, typed (:data:`PEAK_TYPES`).

    Args:
        section: a peak-picking config section (``eval.ssmnet``, ``eval.foote``, a tuned choice
            laid over one); other keys are ignored.

    Returns:
        one value per :data:`PEAK_KEYS` key, ready for ``detect_boundaries(..., **settings)``.

    Raises:
        ValueError: the section lacks a key (every one is named), or a value cannot be converted to its type.
    """
    missing = [key for key in PEAK_KEYS if key not in section]
    if missing:
        raise ValueError(f"peak picking needs {', '.join(missing)}: missing from the section "
                         f"(which has {', '.join(str(k) for k in section) or 'no keys'})")
    return {key: kind(section[key]) for key, kind in PEAK_TYPES.items()}


def _parabolic_time(novelty: np.ndarray, times: np.ndarray, index: int) -> float:
    """Time of the vertex of the parabola through frames ``index - 1 .. index + 1`` (an inner local maximum)."""
    left, centre, right = novelty[index - 1], novelty[index], novelty[index + 1]
    curvature = left - 2 * centre + right
    if curvature >= 0:  # flat: no vertex to move to
        return float(times[index])
    offset = float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    neighbour = index + 1 if offset > 0 else index - 1
    return float(times[index] + abs(offset) * (times[neighbour] - times[index]))


def label_segments(
    features: np.ndarray,
    times: np.ndarray,
    boundaries: np.ndarray,
    distance_threshold: float,
) -> list[str]:
    """Label segments by clustering their mean feature vectors (average-linkage, cosine distance).

    Segments whose mean features lie within ``distance_threshold`` (cosine distance,
    in [0, 2]) of each other, in average linkage, share a label. Labels are letters
    ``A, B, ...`` in order of first appearance (``A1, B1, ...`` past 26).

    Args:
        features: frame features, shape (n_frames, n_dims).
        times: frame times in seconds, shape (n_frames,).
        boundaries: inner boundary times in seconds, increasing; defines ``len + 1`` segments.
        distance_threshold: the cophenetic cosine distance below which segments merge (``label_distance``).

    Returns:
        ``len(boundaries) + 1`` labels.

    Raises:
        ValueError: ``features`` and ``times`` disagree in length.
    """
    features = np.asarray(features, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != times.shape[0]:
        raise ValueError(f"features {features.shape} must be (n_frames, n_dims) with n_frames = {times.shape[0]}")
    segment_of_frame = np.searchsorted(np.asarray(boundaries, dtype=np.float64), times, side="right")
    n_segments = len(boundaries) + 1
    means = np.zeros((n_segments, features.shape[1]))
    for segment in range(n_segments):
        frames = features[segment_of_frame == segment]
        if len(frames):
            means[segment] = frames.mean(axis=0)
    if n_segments == 1:
        return ["A"]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = means / np.where(norms > 0, norms, 1.0)
    clusters = fcluster(linkage(unit, method="average", metric="cosine"), t=distance_threshold, criterion="distance")
    return letters_in_order(clusters)


def letters_in_order(cluster_ids) -> list[str]:
    """Map cluster ids to letters ``A, B, ...`` in order of first appearance (``A1, ...`` past 26)."""
    names: dict = {}
    for cluster in cluster_ids:
        if cluster not in names:
            k = len(names)
            letter = string.ascii_uppercase[k % 26]
            names[cluster] = letter if k < 26 else f"{letter}{k // 26}"
    return [names[cluster] for cluster in cluster_ids]
