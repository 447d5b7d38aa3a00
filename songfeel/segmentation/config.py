"""SSM-Net's configuration: the ``segmentation`` config group's sections as typed objects.

Every value comes from ``conf/segmentation/default.yaml`` (or a checkpoint's copy of it): the objects
built here have no defaults of their own, and a missing key is a :class:`ValueError` that names it.
"""

from __future__ import annotations

import copy
import logging
import math

from omegaconf import DictConfig, OmegaConf

from songfeel.segmentation.baselines import FooteFeatureConfig
from songfeel.segmentation.features import (
    StructureFeatureConfig,
)
from songfeel.segmentation.pretrain import TeacherPretrainConfig
from songfeel.segmentation.ssmnet import (
    SSMNetConfig,
    SSMNetTrainConfig,
)

log = logging.getLogger(__name__)

#: Version tag stored in checkpoints written by :func:`save_ssmnet`.


#: Epoch selection rules of :func:`train_ssmnet`.
SELECT_BY = ("val_hr_3f", "val_hr_mean", "val_tuned", "val_loss")


def section(cfg, name: str) -> dict:
    """``cfg[name]`` as a plain dict (an OmegaConf node is resolved section by section)."""
    if name not in cfg:
        raise KeyError(f"structure config has no {name!r} section")
    node = cfg[name]
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return copy.deepcopy(dict(node))


def feature_config(cfg) -> StructureFeatureConfig:
    """SSM-Net's front end from ``cfg.features``."""
    return StructureFeatureConfig.from_mapping(section(cfg, "features"))


def model_config(cfg) -> SSMNetConfig:
    """SSM-Net's architecture from ``cfg.model``, with the patch shape and hop taken from ``cfg.features``.

    Raises:
        ValueError: ``cfg.model`` sets ``n_mels``, ``patch_steps`` or ``patch_hop_seconds``
            to a value other than the front end's.
    """
    features = feature_config(cfg)
    derived = {"n_mels": features.n_mels, "patch_steps": features.patch_steps,
               "patch_hop_seconds": features.patch_hop_seconds}
    model = section(cfg, "model")
    for key, value in derived.items():
        if key in model and not math.isclose(float(model[key]), float(value), rel_tol=1e-9):
            raise ValueError(f"model.{key} = {model[key]} disagrees with the features' {value}")
    return SSMNetConfig.from_mapping({**model, **derived})


def train_config(cfg) -> SSMNetTrainConfig:
    """Optimiser and loss knobs from ``cfg.train``."""
    return SSMNetTrainConfig.from_mapping(section(cfg, "train"))


def pretrain_config(cfg) -> TeacherPretrainConfig | None:
    """Teacher pretraining of the encoder from ``cfg.pretrain``; None for a config without that section
    (a checkpoint's, or one from before pretraining existed), which means no pretraining."""
    if "pretrain" not in cfg:
        return None
    return TeacherPretrainConfig.from_mapping(section(cfg, "pretrain"))


def foote_feature_config(cfg) -> FooteFeatureConfig:
    """Foote's frame features from ``cfg.eval.foote.frames``."""
    foote = section(cfg, "eval")["foote"]
    if foote.get("frames") is None:
        raise ValueError("eval.foote has no frames section (Foote's log-mel and MFCC analysis)")
    return FooteFeatureConfig.from_mapping(foote["frames"])
