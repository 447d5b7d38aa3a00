"""Stage 03: build label, self-supervised and human (odd-one-out) triplets; none crosses splits."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.triplets import build_triplets


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    build_triplets(cfg.triplets, cfg.paths.manifest, cfg.paths.features, cfg.paths.triplets, cfg.paths.triplets_report,
                   label_columns=cfg.dataset.label_columns, hierarchy_column=cfg.dataset.get("hierarchy_column"))


if __name__ == "__main__":
    main()
