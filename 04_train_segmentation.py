"""Stage 04 (segmentation): train SSM-Net on the train medleys (conf/segmentation/); the epoch kept by validation."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.segmentation import train_segmentation


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    history = train_segmentation(cfg.segmentation)
    return float(history["val_hr_3f"].max()) if "val_hr_3f" in history else float("nan")


if __name__ == "__main__":
    main()
