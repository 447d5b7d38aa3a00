"""Stage 03: build label, self-supervised and human (odd-one-out) triplets; none crosses splits.

    python 03_build_triplets.py                  # triplets
    python 03_build_triplets.py task=structure   # the structure benchmark: medleys of the manifest's songs
"""

import json
import logging
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from songfeel import manifest

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # Each branch imports what it runs, so that dvc.yaml's stages list only their own code.
    if cfg.task.name == "structure":
        from songfeel.structure.stages import build_medleys_stage
        build_medleys_stage(cfg.paths.manifest, cfg.structure)
    elif cfg.task.name == "embedding":
        from songfeel.store import FeatureStore
        from songfeel.triplets import build_triplets, read_human_answers
        tracks = manifest.read(cfg.paths.manifest)
        with FeatureStore(cfg.paths.features) as store:
            durations = {t: n / store.config.frame_rate for t, n in store.frame_counts().items()}
        answers = [read_human_answers(p) for p in cfg.triplets.human_answers]
        table, report = build_triplets(
            tracks,
            durations,
            label_columns=cfg.dataset.label_columns,
            label_per_anchor=cfg.triplets.label_per_anchor,
            self_per_track=cfg.triplets.self_per_track,
            excerpt_seconds=cfg.triplets.excerpt_seconds,
            seed=cfg.triplets.seed,
            hierarchy_column=cfg.dataset.get("hierarchy_column"),
            human_answers=pd.concat(answers, ignore_index=True) if answers else None,
        )
        table.to_csv(cfg.paths.triplets, index=False)
        Path(cfg.paths.triplets_report).write_text(json.dumps(report, indent=2) + "\n")
        log.info("wrote %d triplets to %s: %s", len(table), cfg.paths.triplets, report)
    else:
        raise ValueError(f"task.name must be embedding or structure, got {cfg.task.name!r}")


if __name__ == "__main__":
    main()
