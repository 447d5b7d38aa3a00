"""Shared fixtures: real demo tracks and a small real feature store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from songfeel.datasets import demo
from songfeel.features import FeatureConfig
from songfeel.store import write_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_manifest():
    """The full demo manifest (28 real tracks), built by the demo source."""
    cfg = OmegaConf.load(REPO / "conf/dataset/demo.yaml")
    manifest, skipped = demo.build_manifest(cfg)
    assert skipped.empty
    return manifest


@pytest.fixture(scope="session")
def demo_paths(demo_manifest) -> list[str]:
    return demo_manifest["path"].tolist()


@pytest.fixture(scope="session")
def feature_config() -> FeatureConfig:
    return FeatureConfig.from_mapping(OmegaConf.load(REPO / "conf/features/logmel.yaml"))


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, demo_manifest, feature_config):
    """A feature store of 8 real demo tracks spanning every split: (path, manifest rows)."""
    rows = demo_manifest.groupby("split", group_keys=False).head(3).reset_index(drop=True)
    path = tmp_path_factory.mktemp("store") / "features.h5"
    skipped, _ = write_store(rows, path, feature_config, n_jobs=2)
    assert skipped.empty
    return path, rows


#: MECOMP's current model, in shared/ beside the checkout (../shared/DATA.md).
MECOMP_ONNX = Path(__file__).resolve().parents[2] / "shared/baselines/mecomp_audio_embedding_model.onnx"


@pytest.fixture(scope="session")
def mecomp_onnx() -> Path:
    """MECOMP's ONNX model from shared/ beside the checkout; skip without it, but fail on CI."""
    if not MECOMP_ONNX.is_file():
        message = f"{MECOMP_ONNX} not found (shared/baselines is not beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must provide it")
        pytest.skip(message)
    return MECOMP_ONNX


def tiny_structure_config(**train):
    """The real config group with small medleys, a tiny network and a few epochs."""
    cfg = OmegaConf.load(REPO / "conf/structure/default.yaml")
    return OmegaConf.merge(cfg, {
        "medleys": {"n": {"train": 3, "validation": 2, "test": 2}, "n_sections": [3, 4],
                    "section_seconds": [5.0, 8.0]},
        "model": {"channels": [4, 8], "embedding_dim": 16, "n_layers": 1, "n_heads": 2, "ff_dim": 16,
                  "kernel_seconds": 6.0, "kernel_sigma_seconds": 1.5},
        "train": {"epochs": 4, "learning_rate": 3e-3, **train},
        "eval": {"bootstrap_resamples": 200, "n_plots": 1, "foote": {"kernel_seconds": 6.0}},
    })
