"""Stage 02 (teacher): run the teacher (musicnn) over every track of the manifest and cache its per-patch
outputs in HDF5, incrementally, for distillation (songfeel.teacher.targets). The only stage that imports
TensorFlow."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from songfeel import manifest
from songfeel.teacher.stage import write_teacher_store

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    tracks = manifest.read(cfg.paths.manifest)
    skipped, summary = write_teacher_store(tracks, cfg.paths.teacher, cfg.teacher, n_jobs=cfg.teacher.n_jobs,
                                           min_seconds=cfg.teacher.min_seconds)
    Path(cfg.paths.teacher_skipped).parent.mkdir(parents=True, exist_ok=True)
    skipped.to_csv(cfg.paths.teacher_skipped, index=False)
    if len(skipped):
        log.warning("%d tracks skipped, listed in %s", len(skipped), cfg.paths.teacher_skipped)


if __name__ == "__main__":
    main()
