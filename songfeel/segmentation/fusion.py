"""Late fusion of novelty curves: SSM-Net's learned novelty with Foote's novelty on fixed features.

SSM-Net's novelty comes from features fitted to the training soundtracks, Foote's from MFCCs that
were fitted to nothing; on unheard soundtracks the two can fail on different boundaries. Combining the
cues of several features is a standard way to make structure boundaries robust (J. Paulus, M. Müller and
A. Klapuri, "State of the art report: audio-based music structure analysis", ISMIR 2010). Here the two
novelty curves are fused before peak picking. Each is scaled to a peak of 1 over the song, so the weight
sets its share, not the curve's range. The fused curve lives on SSM-Net's frame times, and the weight is
chosen on the validation medleys, never on test (``benchmarks/segmentation_ablation.py``).
"""

from __future__ import annotations

import numpy as np


def fuse_novelty(learned: np.ndarray, learned_times: np.ndarray, classic: np.ndarray, classic_times: np.ndarray,
                 weight: float) -> np.ndarray:
    """``weight`` times the learned novelty plus ``1 - weight`` times the classic one, each peak-normalised.

    The classic curve is linearly interpolated onto ``learned_times`` (held at its end values outside
    its own span). A curve that is zero everywhere adds nothing.

    Args:
        learned: SSM-Net's novelty curve, shape (n_frames,).
        learned_times: its frame times in seconds, shape (n_frames,), increasing.
        classic: Foote's novelty curve, shape (n_classic,).
        classic_times: its frame times in seconds, shape (n_classic,), increasing.
        weight: the learned curve's share, in [0, 1] (1: SSM-Net alone, 0: Foote alone).

    Returns:
        float64 fused novelty on ``learned_times``, shape (n_frames,), in [0, 1].

    Raises:
        ValueError: ``weight`` outside [0, 1], a curve and its times of different shapes, an empty
            curve, or NaN/Inf in a curve.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must lie in [0, 1], got {weight}")
    curves = []
    for name, curve, times in (("learned", learned, learned_times), ("classic", classic, classic_times)):
        curve, times = np.asarray(curve, dtype=np.float64), np.asarray(times, dtype=np.float64)
        if curve.ndim != 1 or curve.shape != times.shape or len(curve) == 0:
            raise ValueError(f"{name} novelty {curve.shape} and its times {times.shape} must be the same, "
                             f"non-empty, one-dimensional shape")
        if not np.all(np.isfinite(curve)):
            raise ValueError(f"{name} novelty holds NaN or Inf")
        peak = float(np.max(np.abs(curve)))
        curves.append((curve / peak if peak > 0 else curve, times))
    (learned, learned_times), (classic, classic_times) = curves
    return weight * learned + (1.0 - weight) * np.interp(learned_times, classic_times, classic)
