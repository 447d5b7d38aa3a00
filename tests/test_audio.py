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
