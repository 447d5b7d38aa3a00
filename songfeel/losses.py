"""Training losses on L2-normalised embeddings."""

from __future__ import annotations

import torch
from torch import nn


def triplet_margin_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean of ``max(0, d(a, p) - d(a, n) + margin)`` with Euclidean d.

    Schroff et al., "FaceNet", CVPR 2015 (arXiv 1503.03832). On unit vectors
    the Euclidean distance lies in [0, 2].

    Args:
        anchor, positive, negative: (batch, dim).
        margin: the margin, in units of Euclidean distance.

    Returns:
        a scalar tensor.
    """
    return nn.functional.triplet_margin_loss(anchor, positive, negative, margin=margin, p=2.0)


def triplet_correct(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Per triplet, whether d(a, p) < d(a, n); bool (batch,)."""
    return (anchor - positive).norm(dim=-1) < (anchor - negative).norm(dim=-1)
