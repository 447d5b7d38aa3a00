import numpy as np
import pytest
import torch

from songfeel.embed import embed_excerpts, excerpt_frames, pad_batch
from songfeel.models.embedder import build_embedder
from songfeel.store import FeatureStore
from test_models import model_cfg


def test_excerpts_in_seconds_become_clipped_frame_ranges(small_store):
    path, rows = small_store
    with FeatureStore(path) as store:
        track_id = rows.iloc[0]["track_id"]
        n_frames = store.n_frames(track_id)
        rate = store.config.frame_rate
        assert excerpt_frames(store, track_id, 1.0, 2.0) == (track_id, int(np.floor(rate)), int(np.ceil(2 * rate)))
        assert excerpt_frames(store, track_id, 0.0, 1e6) == (track_id, 0, n_frames)
        with pytest.raises(KeyError, match="not in the feature store"):
            excerpt_frames(store, "demo:unknown", 0.0, 1.0)


def test_pad_batch_keeps_lengths():
    frames, lengths = pad_batch([np.ones((3, 2), np.float32), np.full((5, 2), 2.0, np.float32)])
    assert frames.shape == (2, 5, 2) and lengths.tolist() == [3, 5]
    assert frames[0, 3:].abs().sum() == 0 and (frames[1] == 2).all()


def test_batched_embedding_keeps_the_order_of_the_excerpts(small_store, feature_config):
    path, rows = small_store
    torch.manual_seed(0)
    model = build_embedder(model_cfg("sliding", "gru"), feature_config).eval()
    with FeatureStore(path) as store:
        excerpts = [(t, 0, n) for t, n in zip(rows["track_id"][:3], (600, 200, 900))]
        batched = embed_excerpts(model, store, excerpts, batch_size=2)
        alone = np.concatenate([embed_excerpts(model, store, [e], batch_size=1) for e in excerpts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert batched.shape == (3, 32)
