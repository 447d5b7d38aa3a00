"""Stage 05: every variant and baseline side by side: triplet accuracy per split and source, retrieval,
structure (human vs AI), cost; metrics.json, report.md and plots (see songfeel.evaluate)."""

import hydra
from omegaconf import DictConfig

from songfeel.evaluate import evaluate_runs


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    evaluate_runs(cfg.paths.runs, cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest, cfg.eval, cfg.paths.results,
                  cfg.dataset.label_columns)


if __name__ == "__main__":
    main()
