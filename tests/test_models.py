import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.features import log_mel
from songfeel.models.embedder import AudioEmbedder, build_embedder, gather_windows, parameter_count
from songfeel.models.frontend import LogMelFrontend

from conftest import REPO

# Every variant that conf/ defines, so that a new config file is tested too.
HEADS = sorted(p.stem for p in (REPO / "conf/head").glob("*.yaml"))
WINDOWS = sorted(p.stem for p in (REPO / "conf/window").glob("*.yaml"))
MODELS = sorted(p.stem for p in (REPO / "conf/model").glob("*.yaml"))


def model_cfg(window: str, head: str, model: str = "default"):
    return OmegaConf.create({
        "window": OmegaConf.load(REPO / f"conf/window/{window}.yaml"),
        "model": OmegaConf.load(REPO / f"conf/model/{model}.yaml"),
        "head": OmegaConf.load(REPO / f"conf/head/{head}.yaml"),
    })


def test_torch_front_end_matches_the_cached_librosa_features(demo_paths, feature_config):
    samples = load_audio(demo_paths[3])[: 20 * 22050]
    expected = log_mel(samples, feature_config)
    actual = LogMelFrontend(feature_config)(torch.from_numpy(samples)[None])[0].numpy()
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 1e-2  # dB
    assert np.abs(actual - expected).mean() < 1e-4


def test_windows_are_gathered_views_of_the_frames():
    frames = torch.arange(10.0)[None, :, None]
    chunked = gather_windows(frames, 4, 4)[0, :, :, 0]
    assert chunked.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    sliding = gather_windows(frames, 4, 2)[0, :, :, 0]
    assert sliding.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    short = gather_windows(frames[:, :2], 4, 2)[0, :, :, 0]
    assert short.tolist() == [[0, 1, 1, 1]]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("head", HEADS)
def test_padded_batch_gives_each_song_its_own_embedding(window, head, demo_paths, feature_config):
    torch.manual_seed(0)
    model = build_embedder(model_cfg(window, head), feature_config).eval()
    frames = [torch.from_numpy(log_mel(load_audio(p)[: s * 22050], feature_config)) for p, s in
              zip(demo_paths[:3], (4, 12, 7))]
    alone = torch.cat([model(f[None]) for f in frames])
    padded = torch.zeros(3, max(len(f) for f in frames), feature_config.n_mels)
    for i, f in enumerate(frames):
        padded[i, : len(f)] = f
    batched = model(padded, torch.tensor([len(f) for f in frames]))
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)


def test_conf_defines_the_variants_of_the_design():
    assert {"chunked", "sliding"} <= set(WINDOWS) and {"gru", "attention"} <= set(HEADS)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("head", HEADS)
def test_variants_are_small_and_give_32_dimensions(head, window, model_name, feature_config):
    model = build_embedder(model_cfg(window, head, model_name), feature_config)
    assert parameter_count(model) * 4 <= 1_000_000  # at most 1 MB of fp32 weights
    assert sum(b.numel() for b in model.buffers()) * 4 < 10_000  # no hidden weight store in buffers
    audio_model = AudioEmbedder(LogMelFrontend(feature_config), model).eval()
    out = audio_model(torch.randn(2, 22050 * 3) * 0.1)
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_hop_longer_than_window_is_rejected(feature_config):
    cfg = model_cfg("chunked", "gru")
    cfg.window.hop_seconds = 2.0
    with pytest.raises(ValueError, match="hop_frames"):
        build_embedder(cfg, feature_config)
