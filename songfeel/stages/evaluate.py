"""Stage 05 (evaluate): every trained variant and every baseline side by side, in one run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from songfeel.baselines.mecomp import find_mecomp_model
from songfeel.evaluate import evaluate_runs


def evaluate(eval_cfg, mecomp, runs_dir: str | Path, features_path: str | Path, triplets_path: str | Path,
             manifest_path: str | Path, teacher_path: str | Path, results_dir: str | Path,
             label_columns: Sequence[str] | None) -> dict:
    """Measure every run of ``runs_dir`` and every baseline; write ``results_dir`` (:func:`songfeel.evaluate.evaluate_runs`).

    Args:
        eval_cfg: the ``eval`` config group (``conf/eval/``).
        mecomp: the ``mecomp`` config group (``conf/mecomp/``): where MECOMP's model is, or is fetched to.
        runs_dir, features_path, triplets_path, manifest_path, teacher_path: the outputs of stages 04, 02, 03,
            01 and 02 (teacher).
        results_dir: receives metrics.json, report.md, the CSV tables and plots.
        label_columns: the dataset's label columns, for retrieval and maps.

    Returns:
        the flat metrics written to ``metrics.json``.
    """
    mecomp_onnx = find_mecomp_model(mecomp) if "mecomp" in eval_cfg.baselines else None
    return evaluate_runs(runs_dir, features_path, triplets_path, manifest_path, eval_cfg, results_dir, label_columns,
                         teacher_path=teacher_path, mecomp_onnx=mecomp_onnx)
