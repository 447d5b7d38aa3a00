"""Sequence heads: pool a song's window features into one vector.

Both heads take a padding mask, so a zero-padded batch gives each song exactly
the embedding it gets alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def masked_attention_pool(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted sum over time that ignores padded steps.

    Args:
        scores: (batch, time, heads) attention logits.
        values: (batch, time, dim); dim must be divisible by heads.
        mask: (batch, time) bool, True where the step is real.

    Returns:
        (batch, dim).
    """
    batch, time, dim = values.shape
    heads = scores.shape[-1]
    scores = scores.masked_fill(~mask[:, :, None], -1e9)
    weights = torch.softmax(scores, dim=1)  # (batch, time, heads)
    values = values.reshape(batch, time, heads, dim // heads)
    return (weights[..., None] * values).sum(dim=1).reshape(batch, dim)


class GRUHead(nn.Module):
    """A unidirectional GRU over windows, then attention pooling.

    The GRU is causal, so trailing padding cannot change the outputs at real
    steps; the pooling masks the padded steps out.

    Input: (batch, time, in_dim) and mask (batch, time). Output: (batch, hidden_size).
    """

    def __init__(self, in_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.score = nn.Linear(hidden_size, 1)
        self.out_dim = hidden_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # An explicit zero state keeps the exported GRU valid for any batch size.
        initial = x.new_zeros(self.gru.num_layers, x.shape[0], self.gru.hidden_size)
        hidden, _ = self.gru(x, initial)
        return masked_attention_pool(self.score(hidden), hidden, mask)


class AttentionHead(nn.Module):
    """One masked multi-head self-attention layer, then multi-head attention pooling.

    Scaled dot-product attention as in Vaswani et al. 2017 (arXiv 1706.03762),
    written with plain matmuls so that it exports to any ONNX importer.

    Input: (batch, time, in_dim) and mask (batch, time). Output: (batch, model_dim).
    """

    def __init__(self, in_dim: int, model_dim: int, num_heads: int, ff_dim: int) -> None:
        super().__init__()
        if model_dim % num_heads:
            raise ValueError(f"model_dim {model_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = model_dim // num_heads
        self.proj = nn.Linear(in_dim, model_dim)
        self.qkv = nn.Linear(model_dim, 3 * model_dim)
        self.out = nn.Linear(model_dim, model_dim)
        self.norm1 = nn.LayerNorm(model_dim)
        self.ff = nn.Sequential(nn.Linear(model_dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, model_dim))
        self.norm2 = nn.LayerNorm(model_dim)
        self.pool_score = nn.Linear(model_dim, num_heads)
        self.out_dim = model_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        batch, time, dim = x.shape
        qkv = self.qkv(x).reshape(batch, time, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (batch, heads, time, time)
        logits = logits.masked_fill(~mask[:, None, None, :], -1e9)
        attended = torch.matmul(torch.softmax(logits, dim=-1), v)
        attended = attended.permute(0, 2, 1, 3).reshape(batch, time, dim)
        x = self.norm1(x + self.out(attended))
        x = self.norm2(x + self.ff(x))
        return masked_attention_pool(self.pool_score(x), x, mask)
