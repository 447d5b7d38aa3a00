"""Stage 06: export the variant with the best validation accuracy as MECOMP's ONNX model, and its other formats."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from songfeel import manifest
from songfeel.export.winner import export_winner

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    tracks = manifest.read(cfg.paths.manifest)
    test = tracks[tracks["split"] == "test"].head(cfg.export.parity_tracks)
    export_winner(
        cfg.paths.runs,
        cfg.export.onnx_path,
        cfg.export.report_path,
        dict(zip(test["track_id"], test["path"])),
        metric=cfg.export.metric,
        opset=cfg.export.opset,
        tolerance=cfg.export.tolerance,
        variants=cfg.export.variants,
        mecomp_onnx=mecomp_model(cfg),
        speed_repeats=cfg.export.speed_repeats,
    )


def mecomp_model(cfg: DictConfig) -> Path | None:
    """MECOMP's model for the speed comparison: ``eval.mecomp_onnx``, else stage 05's download, else None."""
    for path in (cfg.eval.mecomp_onnx, cfg.eval.get("mecomp_download")):
        if path and Path(path).is_file():
            return Path(path)
    log.warning("MECOMP's model is at neither eval.mecomp_onnx (%s) nor eval.mecomp_download (%s): "
                "results/export.json will not compare speed with it", cfg.eval.mecomp_onnx, cfg.eval.get("mecomp_download"))
    return None


if __name__ == "__main__":
    main()
