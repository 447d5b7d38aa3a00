"""Stage 03 (medleys): the segmentation benchmark, medleys cut from the manifest's songs with known boundaries."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.segmentation import build_medleys


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    build_medleys(cfg.segmentation, cfg.paths.manifest)


if __name__ == "__main__":
    main()
