import numpy as np
import pytest
import soundfile as sf

from songfeel.audio import MECOMP_SAMPLE_RATE, audio_info, downmix, load_audio
from songfeel.errors import AudioDecodeError, AudioTooShortError, SilentAudioError


def test_load_audio_decodes_real_opus_to_mono_22050(demo_paths):
    path = demo_paths[0]
    info = audio_info(path)
    assert info["sample_rate"] == 48000 and info["channels"] == 2
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.shape[0] / MECOMP_SAMPLE_RATE - info["duration_seconds"]) < 0.05
    assert 0.1 < np.abs(samples).max() <= 1.01


def test_downmix_averages_channels():
    stereo = np.stack([np.ones(4, np.float32), -np.ones(4, np.float32) * 0.5], axis=1)
    np.testing.assert_allclose(downmix(stereo), 0.25)


def test_truncated_file_raises_naming_the_file(tmp_path, demo_paths):
    broken = tmp_path / "broken.opus"
    broken.write_bytes(open(demo_paths[0], "rb").read()[:300])
    with pytest.raises(AudioDecodeError, match="broken.opus"):
        load_audio(broken)


def test_missing_and_non_audio_files(tmp_path):
    with pytest.raises(AudioDecodeError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioDecodeError, match="notes.wav"):
        load_audio(text)


def test_silence_and_short_audio(tmp_path, demo_paths):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(44100 * 2, np.float32), 44100)
    with pytest.raises(SilentAudioError, match="silent.wav"):
        load_audio(silent)
    assert load_audio(silent, allow_silence=True).shape == (2 * MECOMP_SAMPLE_RATE,)
    clip = tmp_path / "clip.wav"
    sf.write(clip, load_audio(demo_paths[0])[: MECOMP_SAMPLE_RATE // 2], MECOMP_SAMPLE_RATE)
    with pytest.raises(AudioTooShortError, match="clip.wav"):
        load_audio(clip, min_seconds=1.0)


def _write_m4a(path, stereo: np.ndarray, sample_rate: int) -> None:
    """Encode real audio as AAC in an MP4 container with FFmpeg (PyAV)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "stereo"
        planar = np.ascontiguousarray(stereo.T)
        for start in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(planar[:, start:start + 1024], format="fltp", layout="stereo")
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_what_libsndfile_cannot_read_is_decoded_with_ffmpeg(tmp_path, demo_paths):
    stereo, rate = sf.read(demo_paths[0], dtype="float32", always_2d=True)
    m4a = tmp_path / "song.m4a"
    _write_m4a(m4a, stereo[: 3 * rate], rate)
    with pytest.raises(sf.LibsndfileError):
        sf.info(m4a)
    samples = load_audio(m4a)
    assert abs(samples.shape[0] / MECOMP_SAMPLE_RATE - 3.0) < 0.1
    reference = load_audio(demo_paths[0])
    # AAC adds an encoder delay: align on the lag of the cross-correlation first.
    window = samples[4096:4096 + MECOMP_SAMPLE_RATE]
    lags = [np.dot(window, reference[4096 - lag:4096 - lag + len(window)]) for lag in range(-200, 4000)]
    lag = int(np.argmax(lags)) - 200
    aligned = reference[max(0, -lag): max(0, -lag) + len(samples) - 8192]
    decoded = samples[max(0, lag): max(0, lag) + len(aligned)]
    assert np.corrcoef(decoded, aligned)[0, 1] > 0.9  # the same music, lossy-coded


def test_undecodable_file_names_both_decoders(tmp_path):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"not an mp4 container" * 50)
    with pytest.raises(AudioDecodeError, match=r"bad.m4a: cannot decode: libsndfile: .*; ffmpeg: "):
        load_audio(bad)
