"""Stage 01: write the manifest of the configured dataset (default: the embedded demo).

    python 01_download_fma.py                                   # demo
    python 01_download_fma.py dataset=fma_small                 # download, verify, extract FMA small
    python 01_download_fma.py dataset=local dataset.path=~/Music # your own library
    python 01_download_fma.py dataset=soundtracks               # Debian game soundtracks
"""

import hydra
from omegaconf import DictConfig

from songfeel.stages.download import download


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    download(cfg.dataset, cfg.paths.manifest, cfg.paths.manifest_skipped)


if __name__ == "__main__":
    main()
