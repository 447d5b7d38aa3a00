"""Stage 05: every variant and baseline side by side: triplet accuracy per split and source, retrieval,
consistency (SDC, Vendi; human vs AI), cost; metrics.json, report.md and plots (see songfeel.evaluate)."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.evaluate import evaluate


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    evaluate(cfg.eval, cfg.mecomp, cfg.paths.runs, cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest,
             cfg.paths.teacher, cfg.paths.results, cfg.dataset.label_columns)


if __name__ == "__main__":
    main()
