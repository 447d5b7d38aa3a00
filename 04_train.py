"""Stage 04: train one embedder variant; sweep variants with Hydra multirun.

    python 04_train.py                                          # window=chunked head=gru loss=combined
    python 04_train.py -m window=chunked,sliding head=gru,attention
    python 04_train.py -m loss=triplet,ntxent,combined augment=default,none   # an ablation
    python 04_train.py loss=distill                             # distil the teacher (02_teacher_targets.py) too
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from songfeel.stages.train import train

#: The config groups a variant is made of: all that stage 04 reads (dvc.yaml declares their keys).
VARIANT_GROUPS = ["window", "head", "model", "loss", "augment", "train", "dataset"]


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    OmegaConf.resolve(cfg)  # train.out_dir and train.curves_path name paths of other groups
    return train(OmegaConf.masked_copy(cfg, VARIANT_GROUPS), cfg.paths.features, cfg.paths.triplets, cfg.paths.manifest, cfg.paths.teacher,
                 cfg.train.out_dir)


if __name__ == "__main__":
    main()
