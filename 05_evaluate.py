"""Stage 05: every variant and baseline side by side: triplet accuracy per split and source, retrieval,
structure (human vs AI), cost; metrics.json, report.md and plots (see songfeel.evaluate); and structure
analysis: SSM-Net vs Foote and Laplacian segmentation on the test medleys (songfeel.structure.stages)."""

import logging

import hydra
from omegaconf import DictConfig

from songfeel.evaluate import evaluate_runs
from songfeel.structure.stages import evaluate_stage

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    structure_metrics, sections = {}, []
    if cfg.eval.structure_analysis:
        structure_metrics, structure_table = evaluate_stage(cfg.structure)
        sections = [("Structure analysis: SSM-Net vs Foote and Laplacian on test medleys", structure_table)]
    else:
        log.info("structure analysis not evaluated (eval.structure_analysis=false)")
    evaluate_runs(cfg.paths.runs, cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest, cfg.eval, cfg.paths.results,
                  cfg.dataset.label_columns, extra_metrics=structure_metrics, extra_sections=sections,
                  teacher_path=cfg.paths.teacher)


if __name__ == "__main__":
    main()
