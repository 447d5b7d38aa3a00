"""SSM-Net checkpoints: the weights with the config they were trained with."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from songfeel.segmentation.config import feature_config, model_config, section
from songfeel.segmentation.ssmnet import (
    SSMNet,
)

log = logging.getLogger(__name__)

#: Version tag stored in checkpoints written by :func:`save_ssmnet`.


#: Version tag stored in checkpoints written by :func:`save_ssmnet`.
CHECKPOINT_FORMAT = "songfeel.segmentation.ssmnet/1"


def save_ssmnet(model: SSMNet, cfg, path: str | Path, epoch: int = 0,
                history: pd.DataFrame | None = None, pretrain_history: pd.DataFrame | None = None) -> Path:
    """Write ``model``'s weights with everything :func:`segment_audio` needs to use it.

    The file (``torch.save``) holds ``format`` (:data:`CHECKPOINT_FORMAT`), ``state_dict``,
    ``config`` (``features``, ``model``, ``train``, ``eval``: the ``structure``
    config's layout, so that the checkpoint alone can segment and run the baselines),
    ``epoch``, ``history`` (a list of per-epoch dicts) and ``pretrain_history`` (the same for the
    teacher pretraining of :mod:`songfeel.segmentation.pretrain`; empty without it).

    Returns:
        the path written (parents created).
    """
    path = Path(path)
    config = {
        "features": feature_config(cfg).to_dict(),
        "model": {**model.cfg.to_dict(), "channels": list(model.cfg.channels)},
        "train": section(cfg, "train"),
        "eval": section(cfg, "eval"),
    }
    records = [] if history is None else json.loads(history.to_json(orient="records"))
    pretrained = [] if pretrain_history is None else json.loads(pretrain_history.to_json(orient="records"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(), "config": config,
                "epoch": int(epoch), "history": records, "pretrain_history": pretrained}, path)
    log.info("structure: wrote %s (epoch %d)", path, epoch)
    return path


def load_ssmnet(path: str | Path) -> tuple[SSMNet, dict]:
    """Read a checkpoint of :func:`save_ssmnet`.

    Returns:
        the model (CPU, eval mode) and the stored config (a dict with ``features``,
        ``model``, ``train``, ``eval``, usable as ``cfg`` of :func:`segment_audio`),
        plus ``epoch``, ``history`` and ``pretrain_history`` keys.

    Raises:
        ValueError: the file is missing, unreadable, not such a checkpoint, or its
            weights do not fit its configuration (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime errors) for a bad file
        raise ValueError(f"{path}: cannot read checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    config = dict(checkpoint["config"])
    try:
        model = SSMNet(model_config(config))
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: weights do not fit the stored configuration: {exc}") from exc
    model.eval()
    config.update(epoch=checkpoint.get("epoch", 0), history=checkpoint.get("history", []),
                  pretrain_history=checkpoint.get("pretrain_history", []))
    return model, config
