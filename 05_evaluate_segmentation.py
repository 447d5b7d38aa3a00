"""Stage 05 (segmentation): SSM-Net, Foote and Laplacian segmentation on the same test medleys, scored with mir_eval."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.segmentation import evaluate_segmentation


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    evaluate_segmentation(cfg.segmentation)


if __name__ == "__main__":
    main()
