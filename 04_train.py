"""Stage 04: train one embedder variant; sweep variants with Hydra multirun.

    python 04_train.py                                         # window=chunked head=gru
    python 04_train.py -m window=chunked,sliding head=gru,attention
"""

import hydra
from omegaconf import DictConfig

from songfeel.train import train_variant


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    metrics = train_variant(cfg, cfg.paths.features, cfg.paths.triplets, cfg.train.out_dir)
    return metrics["val_triplet_accuracy"]


if __name__ == "__main__":
    main()
