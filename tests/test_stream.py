"""The streaming embedder gives the whole-song call's embedding on real songs, chunk by chunk."""

from __future__ import annotations

import copy
import itertools
import queue
import threading
from collections.abc import Iterable

import numpy as np
import pytest
import torch
from torch import nn

import songfeel.stream
from songfeel.audio import load_audio
from songfeel.export.onnx import build_audio_model
from songfeel.models.embedder import AudioEmbedder, build_embedder, window_count
from songfeel.models.frontend import LogMelFrontend
from songfeel.stream import StreamingEmbedder
from test_models import model_cfg

TOLERANCE = 1e-4  # the requirement, max abs difference against model(whole_song[None])[0]
IRREGULAR = (1, 511, 512, 513, 4410, 22050, 100000)  # chunk sizes, cycled
SR = 22050
COMBOS = [(window, head) for window in ("chunked", "sliding") for head in ("gru", "attention")]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: the many small calls of a stream run ~10x slower when torch's thread pool
    competes for busy cores (2 busy cores: 92 s against 8 s for this module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(tmp_path, feature_config, calibration: np.ndarray, window: str, head: str) -> AudioEmbedder:
    """A random-weight checkpoint through the export path.

    Its BatchNorm statistics (the input norm and the encoder's) are measured on
    ``calibration`` audio, as training would, so that random weights still tell
    real songs apart (with the default statistics, 0 and 1, they hardly do).
    """
    torch.manual_seed(3)
    cfg = model_cfg(window, head)
    embedder = build_embedder(cfg, feature_config)
    calibrating = AudioEmbedder(LogMelFrontend(feature_config), embedder)
    for module in calibrating.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: the statistics of the calibration batch
    with torch.no_grad():
        calibrating.train()(torch.from_numpy(calibration))
    path = tmp_path / "model.pt"
    torch.save({"state_dict": embedder.state_dict(), "config": {k: dict(v) for k, v in cfg.items()},
                "features": feature_config.to_dict(), "variant": f"{window}-{head}"}, path)
    return build_audio_model(path)


@pytest.fixture(scope="module")
def calibration(demo_paths) -> np.ndarray:
    """(2, 10 s) of two real demo songs that the tests do not embed."""
    return np.stack([load_audio(path)[10 * SR : 20 * SR] for path in demo_paths[3:5]])


@pytest.fixture(scope="module", params=COMBOS, ids=["-".join(c) for c in COMBOS])
def model(request, tmp_path_factory, feature_config, calibration) -> AudioEmbedder:
    return random_model(tmp_path_factory.mktemp("ckpt"), feature_config, calibration, *request.param)


@pytest.fixture(scope="module")
def songs(demo_paths) -> list[np.ndarray]:
    """Three real demo songs (about 30 s each), mono float32 at 22050 Hz."""
    return [load_audio(path) for path in demo_paths[:3]]


def whole_song(model: AudioEmbedder, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(audio))[None])[0].numpy()


def chunks(audio: np.ndarray, sizes: Iterable[int]) -> Iterable[np.ndarray]:
    """``audio`` cut into consecutive chunks of the given sizes, cycled."""
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(audio):
            return
        yield audio[start : start + size]
        start += size


def stream(embedder: StreamingEmbedder, audio: np.ndarray, sizes: Iterable[int] = IRREGULAR) -> np.ndarray:
    for chunk in chunks(audio, sizes):
        embedder.push(chunk)
    return embedder.finish()


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def test_streaming_real_songs_in_irregular_chunks_equals_the_whole_song_call(model, songs, feature_config):
    results = []
    for i, song in enumerate(songs[:2]):
        embedder = StreamingEmbedder(model)
        pieces = [torch.from_numpy(c) if i else c for c in chunks(song, IRREGULAR)]  # numpy, then torch chunks
        for piece in pieces:
            embedder.push(piece)
        expected_frames = feature_config.n_frames(len(song))
        assert embedder.n_samples_seen == len(song)
        assert embedder.n_frames == expected_frames
        assert embedder.n_windows == window_count(expected_frames, embedder.window_frames, embedder.hop_frames)
        actual = embedder.finish()
        expected = whole_song(model, song)
        assert actual.shape == (32,) and actual.dtype == np.float32
        assert abs(float(np.linalg.norm(actual)) - 1.0) < 1e-5
        assert max_diff(actual, expected) <= TOLERANCE, max_diff(actual, expected)
        results.append(actual)
    assert max_diff(results[0], results[1]) > 1e-2  # the model tells the songs apart: the comparison means something


def test_one_push_of_a_whole_song_is_processed_in_blocks(model, songs, monkeypatch):
    monkeypatch.setattr(songfeel.stream, "MAX_BLOCK_FRAMES", 37)  # 37 frames a block, so ~35 blocks
    embedder = StreamingEmbedder(model)
    embedder.push(songs[0][: 20 * SR])
    assert embedder.n_buffered_samples < model.frontend.cfg.n_fft
    assert max_diff(embedder.finish(), whole_song(model, songs[0][: 20 * SR])) <= TOLERANCE


def test_short_songs_equal_the_whole_song_call(model, songs, feature_config):
    """Under one STFT window (zero-padded to one frame), under one model window (padded with silent frames),
    exactly one window, and a window plus part of a hop: the edges of the front end and of the windows."""
    n_fft, hop = feature_config.n_fft, feature_config.hop_length
    embedder = StreamingEmbedder(model)
    window_samples = (embedder.window_frames - 1) * hop + n_fft  # exactly one model window
    hop_samples = embedder.hop_frames * hop
    clip = songs[2][10 * SR :]  # past any fade-in
    lengths = {
        "empty": 0, "one sample": 1, "700 samples": 700, "one STFT window - 1": n_fft - 1, "one STFT window": n_fft,
        "one STFT window + 1": n_fft + 1, "0.5 s": SR // 2, "1.0 s": SR, "one window - 1": window_samples - 1,
        "one window": window_samples, "one window + a hop - 1": window_samples + hop_samples - 1,
        "one window + a hop + 300": window_samples + hop_samples + 300,
    }
    fibonacci = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987)
    for name, n_samples in lengths.items():
        expected = whole_song(model, clip[:n_samples])
        for sizes in (IRREGULAR, fibonacci):
            embedder.reset()
            diff = max_diff(stream(embedder, clip[:n_samples], sizes), expected)
            assert diff <= TOLERANCE, (name, diff)
            n_frames = max(1, feature_config.n_frames(n_samples))
            assert embedder.n_frames == n_frames, name
            assert embedder.n_windows == window_count(n_frames, embedder.window_frames, embedder.hop_frames), name
    # A song under one STFT window is zero-padded, so trailing zeros up to n_fft change nothing.
    embedder.reset()
    short = stream(embedder, clip[:700])
    embedder.reset()
    padded = stream(embedder, np.concatenate([clip[:700], np.zeros(n_fft - 700, np.float32)]))
    assert max_diff(short, padded) <= TOLERANCE


def with_silence(*parts: np.ndarray | int) -> np.ndarray:
    """Concatenate audio, with an int meaning that many samples of digital silence (exact zeros)."""
    return np.concatenate([np.zeros(p, np.float32) if isinstance(p, int) else p for p in parts])


def test_digital_silence_is_treated_as_in_the_whole_song_call(model, songs, feature_config):
    """Trailing zeros are padding in the whole-song call: the stream keeps the windows over them pending."""
    hop = feature_config.hop_length
    clip = songs[1][8 * SR :]
    click = np.array([0.1], np.float32)
    tail = (7 * SR) % hop  # samples after the last whole hop of 7 s
    assert tail > 1
    cases = {
        "trailing 100 zeros": with_silence(clip[: 5 * SR], 100),
        "trailing hop of zeros": with_silence(clip[: 5 * SR + 77], hop),
        "trailing 3 s of zeros": with_silence(clip[: 5 * SR], 3 * SR),
        "5 s of zeros mid-song": with_silence(clip[: 4 * SR], 5 * SR, clip[6 * SR : 9 * SR]),
        "leading 1 s of zeros": with_silence(SR, clip[: 3 * SR]),
        "0.5 s of sound, then 2 s of zeros": with_silence(clip[: SR // 2], 2 * SR),
        "0.5 s of sound, 2 s of zeros, 0.5 s of sound": with_silence(clip[: SR // 2], 2 * SR, clip[SR : 3 * SR // 2]),
        "2 s of zeros, then a click in the last part-hop": with_silence(clip[: 5 * SR], 2 * SR - 1, click),
        "2 s of zeros, then a click ending a whole hop": with_silence(clip[: 5 * SR], 2 * SR - 1 - tail, click),
        "all zeros": with_silence(5 * SR),
        "a NaN every 9000 samples": np.where(np.arange(6 * SR) % 9000 == 0, np.nan, clip[: 6 * SR]).astype(np.float32),
        "all NaN": np.full(SR, np.nan, np.float32),
    }
    embedder = StreamingEmbedder(model)
    for name, audio in cases.items():
        embedder.reset()
        actual = stream(embedder, audio)
        assert np.isfinite(actual).all(), name
        diff = max_diff(actual, whole_song(model, audio))
        assert diff <= TOLERANCE, (name, diff)
    # Trailing silence changes nothing, leading silence does.
    embedder.reset()
    sound = stream(embedder, clip[: 5 * SR])
    embedder.reset()
    assert max_diff(stream(embedder, cases["trailing 3 s of zeros"]), sound) <= TOLERANCE
    embedder.reset()
    assert max_diff(stream(embedder, with_silence(SR, clip[: 5 * SR])), sound) > 1e-3


@pytest.mark.parametrize("window", ["chunked", "sliding"])
def test_gru_state_stays_bounded_on_a_long_song(window, songs, tmp_path, feature_config, calibration):
    """3 min of music, 30 s of digital silence (windows pending), 5 s of music, 10 s of trailing silence."""
    model = random_model(tmp_path, feature_config, calibration, window, "gru")
    music = np.tile(songs[0], -(-180 * SR // len(songs[0])))[: 180 * SR]
    song = with_silence(music, 30 * SR, songs[1][10 * SR : 15 * SR], 10 * SR)
    embedder = StreamingEmbedder(model)
    one_window = (embedder.window_frames - 1) * feature_config.hop_length + feature_config.n_fft  # samples
    for chunk in chunks(song, IRREGULAR):
        embedder.push(chunk)
        assert embedder.n_buffered_samples < feature_config.n_fft < one_window
        assert embedder.n_buffered_frames < embedder.window_frames
        assert embedder.n_buffered_features == 0  # the GRU's state: its hidden state and two online pools
    assert embedder.n_windows == window_count(feature_config.n_frames(len(song)), embedder.window_frames,
                                              embedder.hop_frames) > 225 // 2
    assert max_diff(embedder.finish(), whole_song(model, song)) <= TOLERANCE
    # The windows over the trailing silence were not pooled (the music ends on a non-zero sample).
    assert embedder.n_windows == window_count(feature_config.n_frames(len(song) - 10 * SR), embedder.window_frames,
                                              embedder.hop_frames)


def test_attention_head_keeps_one_feature_per_window(songs, tmp_path, feature_config, calibration):
    model = random_model(tmp_path, feature_config, calibration, "sliding", "attention")
    embedder = StreamingEmbedder(model)
    for chunk in chunks(songs[0][: 10 * SR], IRREGULAR):
        embedder.push(chunk)
        assert embedder.n_buffered_features == embedder.n_windows
        assert embedder.n_buffered_samples < feature_config.n_fft
        assert embedder.n_buffered_frames < embedder.window_frames


def test_push_after_finish_raises_and_reset_starts_the_next_song(songs, tmp_path, feature_config, calibration):
    model = random_model(tmp_path, feature_config, calibration, "sliding", "gru")
    first, second = songs[0][: 12 * SR], songs[1][: 9 * SR + 333]
    embedder = StreamingEmbedder(model)
    a = stream(embedder, first)
    assert embedder.finished
    with pytest.raises(RuntimeError, match="reset"):
        embedder.push(second[:100])
    np.testing.assert_array_equal(embedder.finish(), a)  # finish again: the same embedding
    embedder.reset()
    assert not embedder.finished and embedder.n_samples_seen == embedder.n_windows == 0
    b = stream(embedder, second)
    assert max_diff(b, whole_song(model, second)) <= TOLERANCE
    assert max_diff(a, whole_song(model, first)) <= TOLERANCE
    assert max_diff(a, b) > 1e-2
    # A reset in the middle of a song forgets it.
    embedder.reset()
    for chunk in chunks(first[: 5 * SR], IRREGULAR):
        embedder.push(chunk)
    embedder.reset()
    assert max_diff(stream(embedder, second), b) <= TOLERANCE


def test_decode_and_push_can_run_as_producer_and_consumer(songs, tmp_path, feature_config, calibration):
    model = random_model(tmp_path, feature_config, calibration, "chunked", "attention")
    song = songs[1]
    pipe: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=4)

    def decode() -> None:  # stands in for a decoder that yields chunks as it goes
        for chunk in chunks(song, IRREGULAR):
            pipe.put(chunk.copy())
        pipe.put(None)

    producer = threading.Thread(target=decode)
    producer.start()
    embedder = StreamingEmbedder(model)
    while (chunk := pipe.get()) is not None:
        embedder.push(chunk)
    producer.join()
    assert max_diff(embedder.finish(), whole_song(model, song)) <= TOLERANCE


class MeanHead(nn.Module):
    out_dim = 64

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def test_bad_input_and_unknown_heads_are_refused(songs, tmp_path, feature_config, calibration):
    model = random_model(tmp_path, feature_config, calibration, "chunked", "gru")
    embedder = StreamingEmbedder(model)
    with pytest.raises(ValueError, match="mono"):
        embedder.push(np.zeros((2, 100), np.float32))
    with pytest.raises(TypeError, match="floating point"):
        embedder.push(np.zeros(100, np.int16))
    assert embedder.n_samples_seen == 0
    embedder.push(np.zeros(0, np.float32))  # an empty chunk is fine
    clip = songs[0][5 * SR : 8 * SR]
    assert max_diff(stream(embedder, clip.astype(np.float64)), whole_song(model, clip)) <= TOLERANCE  # converted
    other = copy.deepcopy(model)
    other.embedder.head = MeanHead()
    with pytest.raises(TypeError, match="MeanHead"):
        StreamingEmbedder(other)
