"""Stage 02: decode every track of the manifest and cache its log-mel and MFCC in HDF5, incrementally."""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from songfeel import manifest
from songfeel.features import FeatureConfig
from songfeel.store import write_store

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    tracks = manifest.read(cfg.paths.manifest)
    skipped, _ = write_store(
        tracks,
        cfg.paths.features,
        FeatureConfig.from_mapping(cfg.features),
        n_jobs=cfg.features.n_jobs,
        min_seconds=cfg.features.min_seconds,
        dtype=cfg.features.dtype,
        backend=cfg.features.backend,
        dask_address=cfg.features.dask_address,
    )
    Path(cfg.paths.features_skipped).parent.mkdir(parents=True, exist_ok=True)
    skipped.to_csv(cfg.paths.features_skipped, index=False)
    if len(skipped):
        log.warning("%d tracks skipped, listed in %s", len(skipped), cfg.paths.features_skipped)


if __name__ == "__main__":
    main()
