"""Stage 06: export the variant with the best validation accuracy as MECOMP's ONNX model, and its other formats."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.export import export


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    export(cfg.export, cfg.mecomp, cfg.paths.runs, cfg.paths.manifest)


if __name__ == "__main__":
    main()
