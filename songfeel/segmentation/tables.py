"""Markdown tables and the report section of the structure analysis."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from songfeel.segmentation.config import section
from songfeel.segmentation.scoring import (
    PAIRED_KEYS,
    paired_differences,
    paired_metrics,
    segmentation_metrics,
)

log = logging.getLogger(__name__)

def paired_markdown(differences: pd.DataFrame, method: str = "ssmnet") -> str:
    """A Markdown table of :func:`paired_differences`: ``method`` minus each baseline, with 95 % CIs."""
    names = {"hr_0_5f_trim": "HR.5F trimmed", "hr_3f_trim": "HR3F trimmed", "pairwise_f": "pairwise F"}
    lines = [f"| {method} minus | songs | " + " | ".join(f"{names[k]} [95 % CI]" for k in PAIRED_KEYS) + " |",
             "|" + "---|" * (2 + len(PAIRED_KEYS))]
    for baseline, row in differences.iterrows():
        cells = []
        for key in PAIRED_KEYS:
            low, high = row[f"{key}_diff_ci_low"], row[f"{key}_diff_ci_high"]
            interval = "" if np.isnan(low) else f" [{low:+.3f}, {high:+.3f}]"
            cells.append(f"{row[f'{key}_diff']:+.3f}{interval}")
        lines.append(f"| {baseline} | {int(row['n_songs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of :func:`summarize`'s output: one row per method, means with 95 % CIs.

    HR.5F and HR3F are the boundary hit-rate F-measures (±0.5 s, ±3 s), trimmed (the
    song's start and end are not boundaries) with their CI, then untrimmed; pairwise
    F and NCE F score the labels.
    """
    def with_ci(row, key):
        low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
        if np.isnan(low):
            return f"{row[key]:.3f}"
        return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"

    header = ("| method | songs | HR.5F trimmed [95 % CI] | HR3F trimmed [95 % CI] | HR.5F | HR3F "
              "| pairwise F | NCE F |")
    lines = [header, "|" + "---|" * 8]
    for method, row in summary.iterrows():
        lines.append(f"| {method} | {int(row['n_songs'])} | {with_ci(row, 'hr_0_5f_trim')} | "
                     f"{with_ci(row, 'hr_3f_trim')} | {row['hr_0_5f']:.3f} | {row['hr_3f']:.3f} | "
                     f"{row['pairwise_f']:.3f} | {row['nce_f']:.3f} |")
    return "\n".join(lines) + "\n"


def comparison_report(per_song: pd.DataFrame, summary: pd.DataFrame, cfg, method: str = "ssmnet"
                      ) -> tuple[pd.DataFrame, dict[str, float], str]:
    """Everything written about one evaluation: paired differences, flat metrics and Markdown.

    Args:
        per_song: the :func:`evaluate_songs` per-song table.
        summary: its :func:`summarize` table.
        cfg: the ``structure`` config or a checkpoint's; reads ``eval.bootstrap_resamples`` and ``eval.seed``.
        method: the method compared against the others.

    Returns:
        the :func:`paired_differences` table; flat metrics ``<method>/<score>`` (:func:`segmentation_metrics`,
        None left out) and ``<method>_minus_<baseline>/...`` (:func:`paired_metrics`); and the
        summary and paired tables as Markdown. When the fused method (``fusion``) was scored, its
        paired differences against the baselines join the metrics (``fusion_minus_<baseline>/...``)
        and the Markdown.

    Raises:
        KeyError: ``method`` is not in ``per_song``.
    """
    options = section(cfg, "eval")
    differences = paired_differences(per_song, method, int(options["bootstrap_resamples"]), int(options["seed"]))
    flat = {f"{name}/{key}": value for name, values in segmentation_metrics(summary).items()
            for key, value in values.items() if value is not None}
    flat.update(paired_metrics(differences, method))
    text = summary_markdown(summary) + "\n" + paired_markdown(differences, method)
    if method != "fusion" and "fusion" in set(per_song["method"]):
        # The fused method against the baselines too (the paired table above holds it against ``method``).
        fused = paired_differences(per_song[per_song["method"] != method], "fusion",
                                   int(options["bootstrap_resamples"]), int(options["seed"]))
        flat.update(paired_metrics(fused, "fusion"))
        text += "\n" + paired_markdown(fused, "fusion")
    return differences, flat, text
