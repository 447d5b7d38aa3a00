"""Scores of an estimated segmentation against a reference, with mir_eval 0.8.

* Boundary detection hit rates (``mir_eval.segment.detection``): precision,
  recall and F-measure with a ±0.5 s window (HR.5F) and a ±3 s window (HR3F),
  untrimmed (the song's start and end count as boundaries) and trimmed (they do
  not; the usual figure in MSA papers such as SSM-Net, Peeters 2023).
* Label agreement: pairwise frame clustering F-measure (Levy & Sandler 2008,
  ``mir_eval.segment.pairwise``) and normalised conditional entropies
  (Lukashevich 2008, ``mir_eval.segment.nce``: over-, under-segmentation and their F).

Both segmentations are filled (gaps become segments) and cut or extended to the
reference's ``[0, duration]``, as mir_eval requires for the label scores.
"""

from __future__ import annotations

import logging

import mir_eval
import numpy as np

from songfeel.segmentation.annotations import Segmentation

log = logging.getLogger(__name__)

#: Hit-rate windows (seconds) and their key stems.
WINDOWS = {0.5: "hr_0_5", 3.0: "hr_3"}

#: Keys of :func:`score`, in order.
SCORE_KEYS = tuple(
    f"{stem}{part}{trim}"
    for trim in ("", "_trim")
    for stem in WINDOWS.values()
    for part in ("p", "r", "f")
) + ("pairwise_p", "pairwise_r", "pairwise_f", "nce_over", "nce_under", "nce_f")


def _mir_eval_intervals(segmentation: Segmentation, duration: float) -> tuple[np.ndarray, list[str]]:
    filled = segmentation.filled()
    intervals, labels = mir_eval.util.adjust_intervals(
        filled.intervals, filled.labels, t_min=0.0, t_max=duration,
        start_label="__T_MIN", end_label="__T_MAX")
    return intervals, list(labels)


def score(reference: Segmentation, estimate: Segmentation) -> dict[str, float]:
    """Boundary hit rates and label scores of ``estimate`` against ``reference``.

    Args:
        reference: the annotation; its duration fixes the evaluated span ``[0, duration]``.
        estimate: the estimated segmentation of the same song.

    Returns:
        dict with :data:`SCORE_KEYS`: ``hr_0_5p, hr_0_5r, hr_0_5f, hr_3p, hr_3r, hr_3f``
        (untrimmed), the same with ``_trim`` (song ends removed), ``pairwise_p/r/f``
        and ``nce_over, nce_under, nce_f``; all in [0, 1].
    """
    duration = reference.duration
    ref_intervals, ref_labels = _mir_eval_intervals(reference, duration)
    est_intervals, est_labels = _mir_eval_intervals(estimate, duration)
    scores: dict[str, float] = {}
    for trim, suffix in ((False, ""), (True, "_trim")):
        for window, stem in WINDOWS.items():
            precision, recall, f_measure = mir_eval.segment.detection(
                ref_intervals, est_intervals, window=window, trim=trim)
            scores[f"{stem}p{suffix}"] = float(precision)
            scores[f"{stem}r{suffix}"] = float(recall)
            scores[f"{stem}f{suffix}"] = float(f_measure)
    pairwise = mir_eval.segment.pairwise(ref_intervals, ref_labels, est_intervals, est_labels)
    scores.update(zip(("pairwise_p", "pairwise_r", "pairwise_f"), map(float, pairwise), strict=True))
    nce = mir_eval.segment.nce(ref_intervals, ref_labels, est_intervals, est_labels)
    scores.update(zip(("nce_over", "nce_under", "nce_f"), map(float, nce), strict=True))
    return {key: scores[key] for key in SCORE_KEYS}


def trimmed_hit_rates(reference: Segmentation, boundaries: np.ndarray) -> tuple[float, float]:
    """HR.5F and HR3F, trimmed, of bare boundary times (no labels): the cheap part of :func:`score`.

    Args:
        reference: the annotation; its duration fixes the evaluated span.
        boundaries: estimated inner boundary times in seconds, increasing, shape (n_boundaries,).

    Returns:
        the trimmed F-measures at ±0.5 s and ±3 s, equal to :func:`score`'s
        ``hr_0_5f_trim`` and ``hr_3f_trim`` for an estimate with these boundaries.
    """
    duration = reference.duration
    boundaries = np.asarray(boundaries, dtype=np.float64)
    estimate = Segmentation.from_boundaries(boundaries, ["A"] * (len(boundaries) + 1), duration, "estimate")
    ref_intervals, _ = _mir_eval_intervals(reference, duration)
    est_intervals, _ = _mir_eval_intervals(estimate, duration)
    half, three = (float(mir_eval.segment.detection(ref_intervals, est_intervals, window=window, trim=True)[2])
                   for window in WINDOWS)
    return half, three
