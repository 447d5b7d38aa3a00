"""Embedding excerpts of stored tracks with a trained :class:`SongEmbedder`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from songfeel.metrics.triplet import triplet_accuracy
from songfeel.models.embedder import SongEmbedder
from songfeel.store import FeatureStore
from songfeel.triplets import ROLES

#: An excerpt in frames: (track_id, start_frame, stop_frame).
Excerpt = tuple[str, int, int]


def excerpt_frames(store: FeatureStore, track_id: str, start_s: float, end_s: float) -> Excerpt:
    """Convert an excerpt in seconds to frames, clipped to the stored frames.

    Raises:
        KeyError: the track is not in the store.
    """
    if track_id not in store:
        raise KeyError(f"{track_id} is not in the feature store {store.path}")
    n_frames = store.n_frames(track_id)
    cfg = store.config
    start = min(max(0, int(np.floor(start_s * cfg.frame_rate))), n_frames - 1)
    stop = min(n_frames, max(start + 1, int(np.ceil(end_s * cfg.frame_rate))))
    return track_id, start, stop


def pad_batch(arrays: Sequence[np.ndarray], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack arrays of shape (n_frames_i, n_mels) into (batch, max_frames, n_mels) plus lengths (batch,)."""
    tensors = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in arrays]
    return (torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=fill),
            torch.tensor([t.shape[0] for t in tensors]))


@torch.no_grad()
def embed_excerpts(
    model: SongEmbedder, store: FeatureStore, excerpts: Sequence[Excerpt], batch_size: int = 16
) -> np.ndarray:
    """Embed every excerpt whole, in zero-padded batches sorted by length.

    Returns:
        float32 array (n_excerpts, embedding_dim), in the order of ``excerpts``.
    """
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(excerpts)), key=lambda i: excerpts[i][2] - excerpts[i][1])
    out = np.zeros((len(excerpts), model.projection.out_features), dtype=np.float32)
    for begin in range(0, len(order), batch_size):
        chunk = order[begin : begin + batch_size]
        arrays = [store.logmel(*excerpts[i]) for i in chunk]
        frames, lengths = pad_batch(arrays)
        out[chunk] = model(frames.to(device), lengths.to(device)).cpu().numpy()
    return out


def triplet_excerpts(table: pd.DataFrame, store: FeatureStore) -> list[tuple]:
    """Per triplet, the (track, start_frame, stop_frame) of anchor, positive and negative."""
    return [
        tuple(excerpt_frames(store, row[f"{r}_track"], row[f"{r}_start_s"], row[f"{r}_end_s"]) for r in ROLES)
        for _, row in table.iterrows()
    ]


def triplet_accuracy_on_store(model, store: FeatureStore, triplets: list[tuple], batch_size: int) -> float:
    """2-way triplet accuracy on whole excerpts (each excerpt embedded once); NaN without triplets."""
    unique = sorted({excerpt for triplet in triplets for excerpt in triplet})
    index = {excerpt: i for i, excerpt in enumerate(unique)}
    embeddings = embed_excerpts(model, store, unique, batch_size)
    a, p, n = (embeddings[[index[t[k]] for t in triplets]] for k in range(3))
    return triplet_accuracy(a, p, n)
