"""Snippets of real demo songs: taken from the body, rendered once, served by id only."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from songfeel.annotate.clips import CLIP_ID_PATTERN, build_library, snippet_bounds
from songfeel.audio import load_audio


@pytest.mark.parametrize("duration, snippet, expected", [
    (30.0, 15.0, (5.0, 20.0)),  # centred at 12 s would start at 4.5 s: moved past the intro
    (60.0, 15.0, (16.5, 31.5)),  # centred at 40 % = 24 s
    (200.0, 20.0, (70.0, 90.0)),
    (18.0, 15.0, (3.0, 18.0)),  # too short for intro + snippet: the last 15 s
    (8.0, 15.0, (0.0, 8.0)),  # shorter than the snippet: all of it
    (15.0, 15.0, (0.0, 15.0)),
])
def test_snippet_bounds(duration, snippet, expected):
    assert snippet_bounds(duration, snippet, centre=0.4, skip_intro_s=5.0) == pytest.approx(expected)


@pytest.mark.parametrize("args", [(0.0, 15.0), (30.0, 0.0), (30.0, 15.0, 1.0), (30.0, 15.0, 0.0), (-1.0, 10.0)])
def test_snippet_bounds_refuse_nonsense(args):
    with pytest.raises(ValueError):
        snippet_bounds(*args)


def test_clips_are_the_songs_body_and_are_rendered_once(demo_manifest, tmp_path, caplog):
    rows = demo_manifest.head(3)
    with caplog.at_level(logging.INFO, logger="songfeel.annotate.clips"):
        library = build_library(rows, tmp_path, snippet_seconds=12.0, sample_rate=16000)
    assert len(library) == 3 and library.track_ids == sorted(rows["track_id"]) and not library.skipped
    assert "3 rendered, 0 reused" in caplog.text
    for row in rows.itertuples():
        clip = library.for_track(row.track_id)
        assert CLIP_ID_PATTERN.match(clip.clip_id) and clip.path == tmp_path / f"{clip.clip_id}.flac"
        assert clip.start_s >= 5.0 and clip.end_s - clip.start_s == pytest.approx(12.0)
        info = sf.info(clip.path)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        samples, _ = sf.read(clip.path, dtype="float32")
        song = load_audio(row.path, 16000)
        start = int(round(clip.start_s * 16000))
        assert samples.shape == (12 * 16000,)
        np.testing.assert_allclose(samples, song[start : start + samples.shape[0]], atol=2.0 / 32768)
        assert np.abs(samples).max() > 0.01  # real music, not silence
    mtimes = {c.path: c.path.stat().st_mtime_ns for c in library.clips.values()}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="songfeel.annotate.clips"):
        again = build_library(rows, tmp_path, snippet_seconds=12.0, sample_rate=16000)
    assert "0 rendered, 3 reused" in caplog.text
    assert set(again.clips) == set(library.clips)
    assert {c.path: c.path.stat().st_mtime_ns for c in again.clips.values()} == mtimes
    # Another window is another clip: ids say nothing about the song but change with the audio.
    longer = build_library(rows, tmp_path, snippet_seconds=14.0, sample_rate=16000)
    assert not set(longer.clips) & set(library.clips)


def test_a_short_song_gives_what_it_has(demo_manifest, tmp_path):
    row = demo_manifest.head(1).copy()
    audio = load_audio(row["path"].iloc[0], 22050)[: 8 * 22050]  # 8 s of a real song
    path = tmp_path / "short.wav"
    sf.write(path, audio, 22050)
    row["path"], row["duration_seconds"] = str(path), 8.0
    library = build_library(row, tmp_path / "cache", snippet_seconds=15.0)
    clip = library.for_track(row["track_id"].iloc[0])
    assert (clip.start_s, clip.end_s) == (0.0, 8.0)
    samples, rate = sf.read(clip.path, dtype="float32")
    assert rate == 22050 and samples.shape == (8 * 22050,)
    np.testing.assert_allclose(samples, audio, atol=2.0 / 32768)


def test_songs_that_cannot_be_decoded_are_skipped_and_named(demo_manifest, tmp_path, caplog):
    rows = demo_manifest.head(4).copy().reset_index(drop=True)
    broken = tmp_path / "broken.opus"
    broken.write_bytes(os.urandom(4096))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(30 * 8000, dtype=np.float32), 8000)
    rows.loc[1, "path"] = str(broken)
    rows.loc[2, "path"] = str(silent)
    rows.loc[3, "path"] = str(tmp_path / "missing.opus")
    with caplog.at_level(logging.WARNING, logger="songfeel.annotate.clips"):
        library = build_library(rows, tmp_path / "cache", snippet_seconds=10.0)
    assert library.track_ids == [rows.loc[0, "track_id"]]
    assert [s["path"] for s in library.skipped] == [str(broken), str(silent), str(tmp_path / "missing.opus")]
    for path in (broken, silent, tmp_path / "missing.opus"):
        assert str(path) in caplog.text
    assert "digital silence" in caplog.text
    assert not list((tmp_path / "cache").glob("*.tmp"))  # no partial files left behind


def test_the_library_looks_up_ids_only(demo_manifest, tmp_path):
    library = build_library(demo_manifest.head(1), tmp_path, snippet_seconds=10.0)
    clip = next(iter(library.clips.values()))
    assert library.get(clip.clip_id) == clip
    for bad in ("../" + clip.clip_id, clip.clip_id.upper(), str(clip.path), clip.clip_id + ".flac", "", None, 7,
                "0123456789abcdef"):
        assert library.get(bad) is None
