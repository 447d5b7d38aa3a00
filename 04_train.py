"""Stage 04: train one embedder variant; sweep variants with Hydra multirun.

    python 04_train.py                                          # window=chunked head=gru loss=combined
    python 04_train.py -m window=chunked,sliding head=gru,attention
    python 04_train.py -m loss=triplet,ntxent,combined augment=default,none   # an ablation
"""

import hydra
from omegaconf import DictConfig

from songfeel.train import train_variant


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    metrics = train_variant(cfg, cfg.paths.features, cfg.paths.triplets, cfg.train.out_dir, cfg.paths.manifest)
    return metrics["val_triplet_accuracy"]


if __name__ == "__main__":
    main()
