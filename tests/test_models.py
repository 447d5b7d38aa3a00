import numpy as np
import pytest
import torch
from conftest import REPO, logmel_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.features import log_mel
from songfeel.models.embedder import (
    AudioEmbedder,
    build_embedder,
    gather_windows,
    parameter_count,
)
from songfeel.models.frontend import ConvLogMelFrontend, LogMelFrontend

# Every variant that conf/ defines, so that a new config file is tested too.
HEADS = sorted(p.stem for p in (REPO / "conf/head").glob("*.yaml"))
WINDOWS = sorted(p.stem for p in (REPO / "conf/window").glob("*.yaml"))
MODELS = sorted(p.stem for p in (REPO / "conf/model").glob("*.yaml"))


def model_cfg(window: str, head: str, model: str = "default"):
    """The ``window``, ``model`` and ``head`` groups as Hydra composes them (``model=small`` extends ``default``)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"window={window}", f"head={head}", f"model={model}"])
    return OmegaConf.create({key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("window", "model", "head")})


def test_torch_front_end_matches_the_cached_librosa_features(demo_paths, feature_config):
    samples = load_audio(demo_paths[3])[: 20 * 22050]
    expected = log_mel(samples, feature_config)
    actual = LogMelFrontend(feature_config)(torch.from_numpy(samples)[None])[0].numpy()
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 1e-2  # dB
    assert np.abs(actual - expected).mean() < 1e-4


@pytest.fixture(scope="module")
def songs(demo_paths) -> list[np.ndarray]:
    """Three real demo songs (about 30 s each), mono at 22050 Hz."""
    return [load_audio(path) for path in demo_paths[:3]]


def assert_same_log_mel(actual: np.ndarray, expected: np.ndarray, n_frames: int, tolerance_db: float = 1e-2) -> None:
    """Same shape, and within ``tolerance_db`` on every band of the frames whose loudest band is above -80 dB."""
    assert actual.shape == expected.shape == (n_frames, expected.shape[1])
    audible = expected.max(axis=1) > -80.0
    assert audible.any()
    assert np.abs(actual - expected)[audible].max() <= tolerance_db


# One STFT window, an odd count, a whole number of hops, and the whole song.
@pytest.mark.parametrize("n_samples", [1024, 7 * 22050 + 1, 40 * 512, None])
def test_compact_front_end_matches_the_conv_front_end_on_real_songs(n_samples, songs, feature_config):
    compact, conv = LogMelFrontend(feature_config), ConvLogMelFrontend(feature_config)
    for song in songs:
        clip = song if n_samples is None else song[10 * 22050 :][:n_samples]  # past any fade-in
        audio = torch.from_numpy(np.ascontiguousarray(clip))[None]
        with torch.no_grad():
            actual, expected = compact(audio)[0].numpy(), conv(audio)[0].numpy()
        assert_same_log_mel(actual, expected, feature_config.n_frames(len(clip)))


def test_compact_front_end_gives_each_song_of_a_batch_its_own_frames(songs, feature_config):
    compact = LogMelFrontend(feature_config)
    n_samples = min(len(s) for s in songs) - 301  # not a whole number of hops
    batch = torch.from_numpy(np.stack([s[:n_samples] for s in songs]))
    with torch.no_grad():
        batched = compact(batch)
        alone = torch.cat([compact(song[None]) for song in batch])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("n_fft", "hop_length"), [(1024, 256), (2048, 512), (882, 441)])
def test_compact_front_end_handles_other_whole_multiples_of_the_hop(n_fft, hop_length, songs):
    cfg = logmel_config(n_fft=n_fft, hop_length=hop_length)
    clip = torch.from_numpy(songs[0][10 * 22050 : 15 * 22050 + 1])[None]
    with torch.no_grad():
        actual, expected = LogMelFrontend(cfg)(clip)[0].numpy(), ConvLogMelFrontend(cfg)(clip)[0].numpy()
    assert_same_log_mel(actual, expected, cfg.n_frames(clip.shape[1]))


def test_compact_front_end_refuses_what_it_cannot_frame(feature_config):
    with pytest.raises(ValueError, match="whole multiple of hop_length"):
        LogMelFrontend(logmel_config(n_fft=1024, hop_length=300))


def test_input_shorter_than_one_stft_window_is_zero_padded_to_one_frame(songs, feature_config):
    front_end = LogMelFrontend(feature_config)
    clip = torch.from_numpy(songs[0][10 * 22050 :][:700])[None]
    padded = torch.nn.functional.pad(clip, (0, feature_config.n_fft - 700))
    with torch.no_grad():
        for n_samples in (0, 1, 700):
            assert front_end(clip[:, :n_samples]).shape == (1, 1, feature_config.n_mels)
        torch.testing.assert_close(front_end(clip), ConvLogMelFrontend(feature_config)(padded), atol=1e-2, rtol=0)


def test_silence_and_non_finite_samples_give_the_floor_in_their_frames_only(songs, feature_config):
    front_end = LogMelFrontend(feature_config)
    floor = 10 * np.log10(feature_config.amin)
    with torch.no_grad():
        silence = front_end(torch.zeros(1, 5 * 22050))
        np.testing.assert_allclose(silence.numpy(), floor)
        clip = torch.from_numpy(songs[1][10 * 22050 : 20 * 22050].copy())[None]
        clean = front_end(clip)
        for bad in (float("nan"), float("inf"), float("-inf"), 1e30):
            broken = clip.clone()
            broken[0, 100 * 512 + 7] = bad  # inside frames 99 and 100 (n_fft = 2 hops)
            out = front_end(broken)
            assert torch.isfinite(out).all()
            changed = torch.nonzero((out != clean).any(dim=2)[0]).flatten().tolist()
            assert changed == [99, 100], bad
            torch.testing.assert_close(out[0, 99:101], torch.full_like(out[0, 99:101], floor))


def test_compact_front_end_constants_are_a_ninth_of_the_direct_dft(feature_config):
    sizes = {name: 4 * b.numel() for name, b in LogMelFrontend(feature_config).named_buffers()}
    assert sizes["mel_basis"] == 4 * feature_config.n_mels * 2 * 32 * 17  # (part, k2, k1), k1 <= 16
    assert sizes["inner_filters"] == 4 * 32 * 34 * 32  # 32 groups of 34 filters (k1 <= 16, 2 parts) of 32 taps
    assert sum(sizes.values()) < 450_000
    conv = sum(4 * b.numel() for b in ConvLogMelFrontend(feature_config).buffers())
    assert conv > 9 * sum(sizes.values())


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
