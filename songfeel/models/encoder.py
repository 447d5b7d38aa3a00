"""The window encoder: a small CNN over one ~1 s log-mel window.

Depthwise-separable 2-D convolutions (MobileNet, Howard et al. 2017,
arXiv 1704.04861) keep it to a few thousand parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _separable_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, kernel_size=3, stride=2, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class WindowEncoder(nn.Module):
    """CNN over log-mel windows.

    Input: (n_windows, n_mels, window_frames), normalised log-mel.
    Output: (n_windows, channels[-1]).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        channels = list(channels)
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels[0], kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers.append(_separable_block(c_in, c_out))
        self.net = nn.Sequential(*layers)
        self.out_dim = channels[-1]

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        features = self.net(windows[:, None])
        return features.mean(dim=(2, 3))
