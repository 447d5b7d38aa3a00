"""Plots of one segmented song: estimated vs ground-truth SSM, novelty curve and boundaries.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing
changes the process's backend or leaves a figure open.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from songfeel.segmentation import groundtruth
from songfeel.segmentation.annotations import Segmentation

if TYPE_CHECKING:
    from songfeel.segmentation.infer import SegmentDetails

log = logging.getLogger(__name__)

DPI = 110


def _draw_ssm(ax, matrix: np.ndarray, times: np.ndarray, hop: float, title: str) -> None:
    extent = (times[0] - hop / 2, times[-1] + hop / 2, times[-1] + hop / 2, times[0] - hop / 2)
    image = ax.imshow(matrix, cmap="magma", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("time (s)")
    return image


def plot_song(details: SegmentDetails, reference: Segmentation | None, path: str | Path, title: str = "",
              method: str = "SSM-Net") -> Path:
    """Draw SSM-Net's estimate of one song and, when given, its annotation; save as PNG.

    Top: the estimated SSM beside the ground-truth SSM (same label = 1) on the same
    frame times (the ground truth is left out without ``reference``). Bottom: the
    novelty curve against time, with the estimated boundaries (solid) and the
    reference boundaries (dashed).

    Args:
        details: :class:`~songfeel.segmentation.infer.SegmentDetails` (``times``, ``ssm``,
            ``novelty``, ``boundaries`` in seconds, ``duration``).
        reference: the annotation, or None.
        path: the PNG to write (parents created).
        title: the figure's title (e.g. the song id).
        method: the method whose SSM and novelty these are, for the SSM panel's title.

    Returns:
        the path written.

    Raises:
        ValueError: ``details`` holds no frames or its arrays disagree in length.
    """
    times = np.asarray(details.times, dtype=np.float64)
    ssm = np.asarray(details.ssm)
    novelty = np.asarray(details.novelty)
    if times.size == 0 or ssm.shape != (times.size, times.size) or novelty.shape != times.shape:
        raise ValueError(f"details disagree: times {times.shape}, ssm {ssm.shape}, novelty {novelty.shape}")
    hop = float(np.median(np.diff(times))) if times.size > 1 else 1.0
    n_panels = 2 if reference is not None else 1
    fig = Figure(figsize=(4.2 * n_panels + 0.6, 6.8), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n_panels, height_ratios=(3, 1.4))
    image = _draw_ssm(fig.add_subplot(grid[0, 0]), ssm, times, hop, f"{method} SSM")
    if reference is not None:
        _draw_ssm(fig.add_subplot(grid[0, 1]), groundtruth.ssm(reference, times), times, hop, "ground-truth SSM")
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="similarity")
    ax = fig.add_subplot(grid[1, :])
    ax.plot(times, novelty, color="tab:blue", linewidth=1.2, label="novelty")
    for k, boundary in enumerate(details.boundaries):
        ax.axvline(boundary, color="tab:red", linewidth=1.2, label="estimated" if k == 0 else None)
    if reference is not None:
        for k, boundary in enumerate(reference.boundaries()):
            ax.axvline(boundary, color="black", linestyle="--", linewidth=1.0, label="reference" if k == 0 else None)
    ax.set_xlim(0.0, float(details.duration))
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("novelty")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    log.info("wrote %s", path)
    return path
