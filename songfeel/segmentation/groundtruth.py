"""Frame-level ground truth from a :class:`~songfeel.segmentation.annotations.Segmentation`.

SSM-Net (Peeters, ISMIR 2023, arXiv 2309.02243) trains against two targets
computed from the annotation on the model's frame grid:

* the ground-truth self-similarity matrix (SSM): 1 where two frames carry the
  same segment label, 0 elsewhere;
* the ground-truth novelty curve: an impulse at each boundary, smoothed by a
  small Gaussian kernel, with peaks of 1.
"""

from __future__ import annotations

import numpy as np

from songfeel.segmentation.annotations import Segmentation

#: Label of frames that fall in no segment (a gap, or past the last segment).
NO_SEGMENT = "\x00no-segment"

#: The Gaussian of :func:`boundary_novelty` is cut at this many standard deviations.
TRUNCATE_SIGMAS = 3.0


def frame_labels(segmentation: Segmentation, times: np.ndarray) -> np.ndarray:
    """The segment label of each frame time; :data:`NO_SEGMENT` where no segment holds it.

    Args:
        segmentation: the annotation.
        times: frame times in seconds, shape (n_frames,).

    Returns:
        object array of shape (n_frames,) of label strings.
    """
    times = np.asarray(times, dtype=np.float64)
    starts, ends = segmentation.intervals[:, 0], segmentation.intervals[:, 1]
    index = np.searchsorted(starts, times, side="right") - 1
    inside = (index >= 0) & (times < ends[np.clip(index, 0, None)])
    labels = np.array(segmentation.labels + [NO_SEGMENT], dtype=object)
    return labels[np.where(inside, index, -1)]


def ssm(segmentation: Segmentation, times: np.ndarray) -> np.ndarray:
    """Ground-truth SSM: 1 where frames ``i`` and ``j`` carry the same label, else 0.

    Frames in no segment count as sharing one "no segment" label, so the diagonal is 1.

    Args:
        segmentation: the annotation.
        times: frame times in seconds, shape (n_frames,).

    Returns:
        float32 array of shape (n_frames, n_frames), symmetric, values in {0, 1}.
    """
    _, codes = np.unique(frame_labels(segmentation, times).astype(str), return_inverse=True)
    return (codes[:, None] == codes[None, :]).astype(np.float32)


def boundary_novelty(segmentation: Segmentation, times: np.ndarray, sigma_seconds: float) -> np.ndarray:
    """Ground-truth novelty curve: a Gaussian bump of height 1 at each inner boundary.

    Each inner boundary (:meth:`Segmentation.boundaries`) is placed on its
    nearest frame, as an impulse, and smoothed by a Gaussian of standard deviation
    ``sigma_seconds`` cut at :data:`TRUNCATE_SIGMAS` deviations; where bumps
    overlap the curve keeps their maximum, so every boundary frame is exactly 1
    (the novelty target of SSM-Net, Peeters 2023).

    Args:
        segmentation: the annotation.
        times: frame times in seconds, increasing, shape (n_frames,).
        sigma_seconds: the Gaussian's standard deviation in seconds; 0 gives bare impulses.

    Returns:
        float32 array of shape (n_frames,), values in [0, 1]; all zero without inner boundaries.

    Raises:
        ValueError: ``sigma_seconds`` is negative or ``times`` is empty.
    """
    times = np.asarray(times, dtype=np.float64)
    if sigma_seconds < 0:
        raise ValueError(f"sigma_seconds must be >= 0, got {sigma_seconds}")
    if times.size == 0:
        raise ValueError("times is empty")
    novelty = np.zeros(times.shape, dtype=np.float64)
    for boundary in segmentation.boundaries():
        centre = times[int(np.argmin(np.abs(times - boundary)))]
        offset = times - centre
        if sigma_seconds == 0:
            bump = (offset == 0).astype(np.float64)
        else:
            bump = np.exp(-0.5 * (offset / sigma_seconds) ** 2)
            bump[np.abs(offset) > TRUNCATE_SIGMAS * sigma_seconds] = 0.0
        np.maximum(novelty, bump, out=novelty)
    return novelty.astype(np.float32)
