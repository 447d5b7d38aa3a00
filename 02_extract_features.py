"""Stage 02: decode every track of the manifest and cache its log-mel and MFCC in HDF5, incrementally."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.features import extract_features


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    extract_features(cfg.features, cfg.paths.manifest, cfg.paths.features, cfg.paths.features_skipped)


if __name__ == "__main__":
    main()
