"""The local-library source, on a small library of real audio excerpts in every format."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from songfeel import manifest
from songfeel.datasets import demo, local
from songfeel.errors import AudioDecodeError

REPO = Path(__file__).resolve().parents[1]

ALICE = {"artist": "Alice", "album": "First", "genre": "Jazz"}
#: relative path -> (demo track, format, subtype, sample rate written, channels, seconds, tags)
GOOD = {
    "Various/Mix/alice_1.flac": ("calm", "FLAC", "PCM_16", 48000, 2, 3.0, ALICE),
    "Various/Mix/alice_2.ogg": ("energetic", "OGG", "VORBIS", 48000, 2, 2.5, ALICE),
    "Various/Mix/bob.mp3": ("happy", "MP3", "MPEG_LAYER_III", 48000, 2, 3.0, {"artist": "Bob", "album": "Second",
                                                                             "genre": "Rock"}),
    "Dave/Demo Tape/dave_1.wav": ("tender", "WAV", "PCM_16", 44100, 1, 2.0, {}),
    "Dave/Demo Tape/dave_2.FLAC": ("nostalgic", "FLAC", "PCM_16", 44100, 2, 2.0, {}),
    "Erin/Live/erin.ogg": ("calm", "OGG", "VORBIS", 44100, 1, 2.0, {}),
    "Frank/Bootleg/frank.flac": ("happy", "FLAC", "PCM_16", 48000, 2, 2.0, {"genre": "Folk"}),
    "Gina/gina.wav": ("energetic", "WAV", "PCM_16", 48000, 2, 1.5, {}),
    "loose.mp3": ("tender", "MP3", "MPEG_LAYER_III", 44100, 2, 2.0, {}),
}
#: relative path -> words the skip reason must contain
BAD = {
    "Bad/Files/cut.ogg": "truncated",
    "Bad/Files/empty.mp3": "empty file (0 bytes)",
    "Bad/Files/notes.flac": "not a readable audio file",
    "Bad/Files/fake.m4a": "not a readable audio file",
    "Bad/Files/silence.wav": "duration of 0 s",
}
#: labels of the good files with the default label_source (tags_then_folders)
LABELS = {
    "Various/Mix/alice_1.flac": ("Alice", "First", "Jazz"),
    "Various/Mix/alice_2.ogg": ("Alice", "First", "Jazz"),
    "Various/Mix/bob.mp3": ("Bob", "Second", "Rock"),
    "Dave/Demo Tape/dave_1.wav": ("Dave", "Demo Tape", ""),
    "Dave/Demo Tape/dave_2.FLAC": ("Dave", "Demo Tape", ""),
    "Erin/Live/erin.ogg": ("Erin", "Live", ""),
    "Frank/Bootleg/frank.flac": ("Frank", "Bootleg", "Folk"),
    "Gina/gina.wav": ("", "Gina", ""),
    "loose.mp3": ("", "", ""),
}


def excerpt(mood: str, sample_rate: int, channels: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a real demo track, as ``channels`` channels meant for ``sample_rate``."""
    path = sorted((demo.tracks_dir() / mood).glob("*.opus"))[0]
    frames = int(round(seconds * sample_rate))
    samples, _ = sf.read(path, frames=frames, dtype="float32", always_2d=True)
    assert samples.shape[0] == frames
    return samples[:, :channels] if channels == 1 else samples


def write_tags(path: Path, tags: dict[str, str]) -> None:
    audio = mutagen.File(path, easy=True)
    if audio.tags is None:
        audio.add_tags()
    for key, value in tags.items():
        audio[key] = value
    audio.save()


def make_library(root: Path) -> Path:
    for relative, (mood, fmt, subtype, rate, channels, seconds, tags) in GOOD.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, excerpt(mood, rate, channels, seconds), rate, format=fmt, subtype=subtype)
        if tags:
            write_tags(path, tags)
    bad = root / "Bad/Files"
    bad.mkdir(parents=True)
    sf.write(bad / "whole.ogg", excerpt("calm", 48000, 2, 3.0), 48000, format="OGG", subtype="VORBIS")
    data = (bad / "whole.ogg").read_bytes()
    (bad / "whole.ogg").unlink()
    (bad / "cut.ogg").write_bytes(data[: int(len(data) * 0.6)])
    (bad / "empty.mp3").write_bytes(b"")
    (bad / "notes.flac").write_text("not audio, just notes\n" * 20)
    (bad / "fake.m4a").write_text("not audio either\n" * 20)
    sf.write(bad / "silence.wav", np.zeros((0, 2), dtype="float32"), 44100, format="WAV", subtype="PCM_16")
    (root / "Various/Mix/cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not scanned")
    (root / "readme.txt").write_text("not scanned\n")
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return make_library(tmp_path_factory.mktemp("library") / "Music")


def config(root: Path, cache: Path | None, **overrides):
    cfg = OmegaConf.load(REPO / "conf/dataset/local.yaml")
    return OmegaConf.merge(cfg, {"path": str(root), "cache": str(cache) if cache else None, **overrides})


def by_relative(frame, root: Path) -> dict:
    return {Path(p).relative_to(root).as_posix(): row for p, (_, row) in zip(frame["path"], frame.iterrows())}


@pytest.fixture(scope="module")
def built(library, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "scan.json"
    return local.build_manifest(config(library, cache))


def test_config_has_every_knob():
    cfg = OmegaConf.load(REPO / "conf/dataset/local.yaml")
    assert cfg.name == "local" and OmegaConf.is_missing(cfg, "path")
    assert list(cfg.label_columns) == ["artist"]
    assert cfg.label_source in local.LABEL_SOURCES
    assert dict(cfg.folder_levels) == local.DEFAULT_FOLDER_LEVELS
    assert sorted(cfg.extensions) == sorted(local.DEFAULT_EXTENSIONS)
    assert cfg.limit is None and 0 < cfg.val_fraction + cfg.test_fraction < 1
    assert OmegaConf.to_container(cfg)["cache"] == "${paths.data}/cache/local_scan.json"


def test_find_audio_files_is_case_insensitive_and_sorted(library):
    extensions = ["MP3", ".ogg", "flac", "wav", "m4a"]
    found = [p.relative_to(library).as_posix() for p in local.find_audio_files(library, extensions)]
    assert sorted(found) == found
    assert set(found) == set(GOOD) | set(BAD)  # no cover.jpg, no readme.txt
    assert "Dave/Demo Tape/dave_2.FLAC" in found
    flac = {p.name for p in local.find_audio_files(library, ["flac"])}
    assert flac == {"alice_1.flac", "dave_2.FLAC", "frank.flac", "notes.flac"}
    with pytest.raises(NotADirectoryError, match="nowhere"):
        local.find_audio_files(library / "nowhere")


def test_good_files_have_their_header_and_labels(built, library):
    frame, _ = built
    manifest.validate(frame)
    assert list(frame.columns) == list(manifest.COLUMNS)
    rows = by_relative(frame, library)
    assert set(rows) == set(GOOD)
    for relative, (_, _, _, rate, channels, seconds, _) in GOOD.items():
        row = rows[relative]
        assert row["duration_seconds"] == pytest.approx(seconds, abs=0.1), relative
        assert (row["sample_rate"], row["channels"]) == (rate, channels), relative
        assert (row["artist"], row["album"], row["genre"]) == LABELS[relative], relative
        assert row["genres"] == row["genre"] and row["mood"] == row["style"] == ""
        assert row["source"] == "local" and Path(row["path"]).is_absolute()


def test_bad_files_are_skipped_with_their_cause(built, library):
    _, skipped = built
    assert list(skipped.columns) == ["path", "error"]
    reasons = {Path(p).relative_to(library).as_posix(): e for p, e in zip(skipped["path"], skipped["error"])}
    assert set(reasons) == set(BAD)
    for relative, words in BAD.items():
        assert words in reasons[relative], (relative, reasons[relative])


def test_probe_names_the_file_and_cause(library):
    with pytest.raises(AudioDecodeError, match="cut.ogg: truncated"):
        local.probe_file(library / "Bad/Files/cut.ogg")
    assert local.probe_file(library / "Bad/Files/cut.ogg", check_truncation=False)["duration_seconds"] < 3.0
    with pytest.raises(AudioDecodeError, match="missing.flac: cannot read the file"):
        local.probe_file(library / "missing.flac")


def test_label_sources(library):
    rows = {}
    for source in local.LABEL_SOURCES:
        frame, _ = local.build_manifest(config(library, None, label_source=source))
        rows[source] = by_relative(frame, library)

    def labels(source, relative):
        row = rows[source][relative]
        return row["artist"], row["album"], row["genre"]

    # tags only: untagged files get no artist or album
    assert labels("tags", "Various/Mix/alice_1.flac") == ("Alice", "First", "Jazz")
    assert labels("tags", "Dave/Demo Tape/dave_1.wav") == ("", "", "")
    assert labels("tags", "Frank/Bootleg/frank.flac") == ("", "", "Folk")
    # folders only: the tags are ignored for artist and album, genre still comes from its tag
    assert labels("folders", "Various/Mix/alice_1.flac") == ("Various", "Mix", "Jazz")
    assert labels("folders", "Dave/Demo Tape/dave_1.wav") == ("Dave", "Demo Tape", "")
    assert labels("folders", "Gina/gina.wav") == ("", "Gina", "")  # level 2 is the library root
    # tags, else folders
    for relative, expected in LABELS.items():
        assert labels("tags_then_folders", relative) == expected


def test_folder_levels():
    assert local.folder_label("Jazz/Dave/Demo/x.flac", 1) == "Demo"
    assert local.folder_label("Jazz/Dave/Demo/x.flac", 3) == "Jazz"
    assert local.folder_label("Jazz/Dave/Demo/x.flac", 4) == ""
    assert local.folder_label("x.flac", 1) == ""
    labels = local.file_labels({"genre": "Rock"}, "Jazz/Dave/Demo/x.flac", "folders", {"artist": 2, "genre": 3})
    assert labels == {"artist": "Dave", "album": "", "genre": "Jazz"}
    labels = local.file_labels({"genre": "Rock"}, "Jazz/Dave/Demo/x.flac", "tags_then_folders", {"genre": 3})
    assert labels == {"artist": "", "album": "", "genre": "Rock"}
    with pytest.raises(ValueError, match="label_source"):
        local.check_label_config("filenames", None)
    with pytest.raises(ValueError, match="mood"):
        local.check_label_config("tags", {"mood": 1})
    with pytest.raises(ValueError, match="1 .parent folder. or more"):
        local.check_label_config("tags", {"artist": 0})


def test_splits_are_artist_then_album_then_folder_disjoint(library):
    frame, _ = local.build_manifest(config(library, None, val_fraction=0.3, test_fraction=0.3, seed=1))
    assert len(set(frame["split"])) >= 2  # the check below is not vacuous
    with_artist = frame[frame["artist"] != ""]
    assert (with_artist.groupby("artist")["split"].nunique() == 1).all()
    assert len(with_artist.groupby("artist")) == 5
    rows = by_relative(frame, library)
    keys = [local.split_group(r["artist"], r["album"], rel) for rel, r in rows.items()]
    assert local.split_group("", "Gina", "Gina/gina.wav") == "album:gina"
    assert local.split_group("", "", "loose.mp3") == "folder:."
    expected = manifest.assign_group_splits(keys, 0.3, 0.3, 1)
    assert [r["split"] for r in rows.values()] == expected


def test_track_ids_are_stable(library, built):
    first, _ = built
    again, _ = local.build_manifest(config(library, None))
    assert first["track_id"].tolist() == again["track_id"].tolist()
    assert first["split"].tolist() == again["split"].tolist()
    for track_id, relative in zip(first["track_id"], by_relative(first, library)):
        assert track_id == "local:" + hashlib.sha1(relative.encode()).hexdigest()[:16]
        assert manifest.TRACK_ID_PATTERN.match(track_id)


def test_limit_keeps_the_first_tracks_by_id(library, built):
    frame, _ = local.build_manifest(config(library, None, limit=3))
    assert frame["track_id"].tolist() == sorted(built[0]["track_id"])[:3]


def test_scan_cache_probes_only_new_or_changed_files(library, tmp_path, monkeypatch, caplog):
    root = tmp_path / "Music"
    shutil.copytree(library, root)
    cache = tmp_path / "cache/scan.json"
    probed: list[str] = []
    real_probe = local.probe_file

    def counting_probe(path, check_truncation=True):
        probed.append(Path(path).name)
        return real_probe(path, check_truncation=check_truncation)

    monkeypatch.setattr(local, "probe_file", counting_probe)
    first, first_skipped = local.build_manifest(config(root, cache))
    assert len(probed) == len(GOOD) + len(BAD) and cache.is_file()

    probed.clear()
    with caplog.at_level(logging.INFO, logger="songfeel.datasets.local"):
        again, again_skipped = local.build_manifest(config(root, cache))
    assert probed == []
    assert "14 reused from the scan cache, 0 probed" in caplog.text
    assert again.equals(first) and again_skipped.equals(first_skipped)

    touched = root / "Erin/Live/erin.ogg"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    (root / "Bad/Files/empty.mp3").unlink()
    shutil.copy(root / "loose.mp3", root / "loose copy.mp3")
    third, third_skipped = local.build_manifest(config(root, cache))
    assert sorted(probed) == ["erin.ogg", "loose copy.mp3"]
    assert len(third) == len(first) + 1 and len(third_skipped) == len(first_skipped) - 1

    # another library root reuses nothing, and does not evict the first root's entries
    other = tmp_path / "Other"
    shutil.copytree(root / "Dave", other / "Dave")
    probed.clear()
    local.build_manifest(config(other, cache))
    assert sorted(probed) == ["dave_1.wav", "dave_2.FLAC"]
    probed.clear()
    local.build_manifest(config(root, cache))
    assert probed == []


def test_unreadable_cache_is_ignored(library, tmp_path):
    cache = tmp_path / "scan.json"
    cache.write_text("{not json")
    frame, _ = local.build_manifest(config(library, cache))
    assert len(frame) == len(GOOD)
    assert '"version": 1' in cache.read_text()
