"""Stage 03: build label and self-supervised anchor/positive/negative triplets per split."""

import logging

import hydra
from omegaconf import DictConfig

from songfeel import manifest
from songfeel.store import FeatureStore
from songfeel.triplets import build_triplets, summary

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    tracks = manifest.read(cfg.paths.manifest)
    with FeatureStore(cfg.paths.features) as store:
        durations = {t: n / store.config.frame_rate for t, n in store.frame_counts().items()}
    table = build_triplets(
        tracks,
        durations,
        label_columns=cfg.dataset.label_columns,
        label_per_anchor=cfg.triplets.label_per_anchor,
        self_per_track=cfg.triplets.self_per_track,
        excerpt_seconds=cfg.triplets.excerpt_seconds,
        seed=cfg.triplets.seed,
    )
    table.to_csv(cfg.paths.triplets, index=False)
    log.info("wrote %d triplets to %s: %s", len(table), cfg.paths.triplets, summary(table))


if __name__ == "__main__":
    main()
