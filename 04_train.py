"""Stage 04: train one embedder variant; sweep variants with Hydra multirun.

    python 04_train.py                                          # window=chunked head=gru loss=combined
    python 04_train.py -m window=chunked,sliding head=gru,attention
    python 04_train.py -m loss=triplet,ntxent,combined augment=default,none   # an ablation
    python 04_train.py loss=distill                             # distil the teacher (02_teacher_targets.py) too
    python 04_train.py task=structure                           # SSM-Net on the medleys (conf/structure/)
"""

import hydra
from omegaconf import DictConfig



@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    if cfg.task.name == "structure":  # only this branch runs songfeel.structure (see dvc.yaml)
        from songfeel.structure.stages import train_stage
        history = train_stage(cfg.structure)
        return float(history["val_hr_3f"].max()) if "val_hr_3f" in history else float("nan")
    if cfg.task.name == "embedding":
        from songfeel.train import distils, train_variant
        teacher = cfg.paths.teacher if distils(cfg.loss) else None
        metrics = train_variant(cfg, cfg.paths.features, cfg.paths.triplets, cfg.train.out_dir, cfg.paths.manifest,
                                teacher)
        return metrics["val_triplet_accuracy"]
    raise ValueError(f"task.name must be embedding or structure, got {cfg.task.name!r}")


if __name__ == "__main__":
    main()
