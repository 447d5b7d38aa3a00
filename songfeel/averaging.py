"""An exponential moving average of a model's weights (Polyak averaging), for any training loop.

Shared by the embedder's training (:mod:`songfeel.train`) and SSM-Net's
(:mod:`songfeel.segmentation.training`): with a per-step decay ``d``, the average
follows the weights over about ``1 / (1 - d)`` steps, which takes the
step-to-step noise of small batches out of the model that is validated and kept.
Built on :class:`torch.optim.swa_utils.AveragedModel`
(https://pytorch.org/docs/stable/optim.html#weight-averaging-swa-and-ema).
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers, or None without ``decay``.

    Args:
        model: the model being trained.
        decay: the per-step decay in (0, 1), e.g. 0.99 (an average over about 100 steps); None or 0: off.

    Raises:
        ValueError: ``decay`` is outside (0, 1).
    """
    if not decay:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
