"""Stage 02 (teacher): run the teacher (musicnn) over every track of the manifest and cache its per-patch
outputs in HDF5, incrementally, for distillation. The only stage that imports TensorFlow."""

import hydra
from omegaconf import DictConfig

from songfeel.stages.teacher import teacher_targets


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    teacher_targets(cfg.teacher, cfg.paths.manifest, cfg.paths.teacher, cfg.paths.teacher_skipped)


if __name__ == "__main__":
    main()
