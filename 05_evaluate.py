"""Stage 05: every variant and baseline side by side: triplet accuracy per split and source, retrieval,
structure (human vs AI), cost; metrics.json, report.md and plots (see songfeel.evaluate); and structure
analysis: SSM-Net vs Foote and Laplacian segmentation on the test medleys (songfeel.structure.stages)."""

import hydra
from omegaconf import DictConfig

from songfeel.evaluate import evaluate_runs
from songfeel.structure.stages import evaluate_stage


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    structure_metrics, structure_table = evaluate_stage(cfg.structure)
    evaluate_runs(cfg.paths.runs, cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest, cfg.eval, cfg.paths.results,
                  cfg.dataset.label_columns, extra_metrics=structure_metrics,
                  extra_sections=[("Structure analysis: SSM-Net vs Foote and Laplacian on test medleys", structure_table)],
                  teacher_path=cfg.paths.teacher)


if __name__ == "__main__":
    main()
