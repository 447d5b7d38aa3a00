"""Shared fixtures: real demo tracks, a small real feature store, and survey servers and databases."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
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


def logmel_conf():
    """The real ``features`` config group, ``conf/features/logmel.yaml``."""
    return OmegaConf.load(REPO / "conf/features/logmel.yaml")


def logmel_config(**overrides) -> FeatureConfig:
    """Stage 02's front end as conf sets it, with ``overrides`` (e.g. ``n_mels=32``)."""
    return FeatureConfig.from_mapping(OmegaConf.merge(logmel_conf(), overrides))


def store_options(**overrides) -> dict:
    """The options of :func:`songfeel.store.write_store` as conf sets them (``n_jobs``, ``min_seconds``, ``dtype``,
    ``backend``, ``dask_address`` of ``conf/features/logmel.yaml``), with ``overrides``."""
    conf = logmel_conf()
    return {key: conf[key] for key in ("n_jobs", "min_seconds", "dtype", "backend", "dask_address")} | overrides


@pytest.fixture(scope="session")
def feature_config() -> FeatureConfig:
    return logmel_config()


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, demo_manifest, feature_config):
    """A feature store of 8 real demo tracks spanning every split: (path, manifest rows)."""
    rows = demo_manifest.groupby("split", group_keys=False).head(3).reset_index(drop=True)
    path = tmp_path_factory.mktemp("store") / "features.h5"
    skipped, _ = write_store(rows, path, feature_config, **store_options(n_jobs=2))
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


@pytest.fixture(scope="session")
def bliss_runs() -> None:
    """Skip a test that needs bliss-rs where its wheel cannot run: bliss-audio 0.2.0 needs AVX-512, and on a
    CPU without it its probe dies by SIGILL (the skip message gives the cause). Any other cause skips too,
    but fails on CI: there only a CPU without the instruction set may excuse a skip."""
    from songfeel.baselines.bliss import bliss_available

    cause = bliss_available()
    if cause is None:
        return
    if "SIGILL" in cause:
        pytest.skip(f"bliss cannot run on this CPU: {cause}")
    skip_or_fail(f"bliss cannot run here: {cause}")


def segmentation_conf(**sections):
    """The real ``segmentation`` config group, ``conf/segmentation/default.yaml``, with ``sections`` merged over
    it (e.g. ``model={"channels": [4, 8]}``)."""
    return OmegaConf.merge(OmegaConf.load(REPO / "conf/segmentation/default.yaml"), sections)


#: The paper's SSM-Net where conf departs from it for the 30 s demo songs (arXiv 2309.02243: 40-step patches,
#: novelty kernels about 20 s wide): tests written against those values pass them explicitly.
PAPER_SSMNET = {"features": {"patch_steps": 40}, "model": {"kernel_seconds": 20.0, "kernel_sigma_seconds": 5.0}}


def structure_feature_config(**features):
    """SSM-Net's front end as conf sets it, with ``features`` overrides (e.g. ``patch_steps=40``)."""
    from songfeel.segmentation.config import feature_config

    return feature_config(segmentation_conf(features=features))


def ssmnet_config(features=None, **model):
    """SSM-Net's architecture as conf sets it (patch shape and hop from conf's ``features``, with the
    ``features`` overrides), with ``model`` overrides."""
    from songfeel.segmentation.config import model_config

    return model_config(segmentation_conf(features=features or {}, model=model))


def ssmnet_train_config(**train):
    """SSM-Net's training knobs as conf sets them, with ``train`` overrides."""
    from songfeel.segmentation.config import train_config

    return train_config(segmentation_conf(train=train))


def foote_settings(**overrides) -> dict:
    """``eval.foote`` as conf sets it, ready for ``foote_segmentation(audio, rate, feature=..., **settings)``:
    the frame features and SSM-Net's front end (for local refinement) built, with ``overrides``."""
    from songfeel.segmentation.config import (
        feature_config,
        foote_feature_config,
        section,
    )

    cfg = segmentation_conf()
    foote = {key: value for key, value in section(cfg, "eval")["foote"].items()
             if key not in ("features", "by_feature")}
    foote.update(frames=foote_feature_config(cfg), fine_config=feature_config(cfg))
    return {**foote, **overrides}


def peak_conf(method: str = "ssmnet", **overrides) -> dict:
    """A peak-picking section of conf (``eval.ssmnet`` or ``eval.foote``) as a dict, with ``overrides``."""
    from songfeel.segmentation.config import section

    return {**section(segmentation_conf(), "eval")[method], **overrides}


def tiny_structure_config(**train):
    """The real config group with small medleys, a tiny network and a few epochs."""
    cfg = OmegaConf.load(REPO / "conf/segmentation/default.yaml")
    return OmegaConf.merge(cfg, {
        "medleys": {"n": {"train": 3, "validation": 2, "test": 2}, "n_sections": [3, 4],
                    "section_seconds": [5.0, 8.0]},
        "model": {"channels": [4, 8], "embedding_dim": 16, "n_layers": 1, "n_heads": 2, "ff_dim": 16,
                  "kernel_seconds": 6.0, "kernel_sigma_seconds": 1.5},
        "train": {"epochs": 4, "learning_rate": 3e-3, **train},
        "eval": {"bootstrap_resamples": 200, "n_plots": 1, "foote": {"kernel_seconds": 6.0}},
    })


# --- The listening survey (songfeel/annotate) -----------------------------------------------------

def skip_or_fail(reason: str) -> None:
    """Skip a test for a missing system tool; on CI (``CI`` set) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI must provide it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1, started from Debian's binaries."""
    from tests.annotate_support import PostgresCluster, postgres_available

    reason = postgres_available()
    if reason:
        skip_or_fail(reason)
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty survey database: a SQLite file, or a new database in the PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'survey.sqlite'}"
    return request.getfixturevalue("postgres_cluster").create_database()


@pytest.fixture(scope="session")
def survey_manifest(demo_manifest, tmp_path_factory) -> Path:
    """A manifest of 12 real demo songs: 8 of the train split and the 4 of the val split."""
    from songfeel import manifest as manifest_io

    rows = pd.concat([demo_manifest[demo_manifest["split"] == "train"].head(8),
                      demo_manifest[demo_manifest["split"] == "val"].head(4)])
    path = tmp_path_factory.mktemp("survey") / "manifest.csv"
    manifest_io.write(rows, path)
    return path


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory) -> Path:
    """One clip cache for the whole session: each demo song is rendered once."""
    return tmp_path_factory.mktemp("survey_clips")


@pytest.fixture
def start_survey(survey_manifest, clip_cache):
    """Start survey servers: ``start_survey(database_url, **settings)`` -> :class:`RunningSurvey`.

    Defaults: the 12-song manifest, the shared clip cache, a generous rate limit.
    Every server is stopped at the end of the test.
    """
    from songfeel.annotate.app import create_app
    from songfeel.annotate.settings import Settings
    from songfeel.annotate.survey import Survey
    from tests.annotate_support import ADMIN_TOKEN, RunningSurvey, ServerThread

    running = []

    def start(database_url: str, manifest=None, **overrides) -> RunningSurvey:
        options = {"admin_token": ADMIN_TOKEN, "manifest_path": survey_manifest, "clip_cache": clip_cache,
                   "rate_burst": 100_000, "rate_per_second": 1000.0, **overrides}
        settings = Settings(database_url=database_url, **options)
        survey = Survey.start(settings, manifest=manifest)
        server = ServerThread(create_app(settings, survey)).start()
        running.append(RunningSurvey(settings, survey, server))
        return running[-1]

    yield start
    for survey in running:
        survey.stop()
