"""Stage 05: test triplet accuracy and SDC / Vendi structure metrics of every variant, plus plots."""

import hydra
from omegaconf import DictConfig

from songfeel.evaluate import evaluate_runs


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    evaluate_runs(cfg.paths.runs, cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest, cfg.eval, cfg.paths.results,
                  cfg.dataset.label_columns)


if __name__ == "__main__":
    main()
