"""Stage 06 (export): the variant with the best validation accuracy as MECOMP's ONNX model, and its other formats."""

from __future__ import annotations

from pathlib import Path

from songfeel import manifest
from songfeel.baselines.mecomp import find_mecomp_model
from songfeel.export.winner import export_winner


def export(export_cfg, mecomp, runs_dir: str | Path, manifest_path: str | Path) -> dict:
    """Export the winner of ``runs_dir`` and measure it (:func:`songfeel.export.winner.export_winner`).

    Args:
        export_cfg: the ``export`` config group (``conf/export/``).
        runs_dir: stage 04's run folders; manifest_path: stage 01's manifest (its first test songs
            check parity and speed).
        mecomp: the ``mecomp`` config group: MECOMP's model for the speed comparison
            (:func:`songfeel.baselines.mecomp.find_mecomp_model`); where it is missing, the comparison is left out.

    Returns:
        the export record, also written to ``export_cfg.report_path``.
    """
    mecomp_onnx = find_mecomp_model(mecomp)
    tracks = manifest.read(manifest_path)
    test = tracks[tracks["split"] == "test"].head(export_cfg.parity_tracks)
    return export_winner(runs_dir, export_cfg.onnx_path, export_cfg.report_path, dict(zip(test["track_id"], test["path"])),
                         metric=export_cfg.metric, opset=export_cfg.opset, tolerance=export_cfg.tolerance,
                         variants=export_cfg.variants, mecomp_onnx=mecomp_onnx, speed_repeats=export_cfg.speed_repeats)
