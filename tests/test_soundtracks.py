"""The Debian game-soundtrack source, on a real installed package (CI installs extremetuxracer-data)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from songfeel import manifest
from songfeel.datasets import soundtracks

REPO = Path(__file__).resolve().parents[1]
PREFERRED = "extremetuxracer-data"
MISSING = "songfeel-no-such-package"


def installed(package: str) -> bool:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("installed")


@pytest.fixture(scope="module")
def package() -> str:
    """An installed soundtrack package; skip without one, but fail on CI, which installs one."""
    found = [p for p in soundtracks.PACKAGES if installed(p)]
    if not found:
        message = f"no soundtrack package installed (apt install {PREFERRED})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    return PREFERRED if PREFERRED in found else found[0]


def config(packages, cache: Path | None, **overrides):
    cfg = OmegaConf.load(REPO / "conf/dataset/soundtracks.yaml")
    return OmegaConf.merge(cfg, {"packages": list(packages), "cache": str(cache) if cache else None, **overrides})


@pytest.fixture(scope="module")
def built(package, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "scan.json"
    return soundtracks.build_manifest(config([package, MISSING], cache))


def sha1(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def test_config_has_every_knob():
    cfg = OmegaConf.load(REPO / "conf/dataset/soundtracks.yaml")
    assert cfg.name == "soundtracks" and cfg.min_seconds == 60.0
    assert list(cfg.label_columns) == ["album"]
    # DATA.md's soundtracks first; the extra ones are pinned to train or val, so that the
    # seeded split cannot move any of them into the held-out test set.
    assert tuple(cfg.packages[: len(soundtracks.PACKAGES)]) == soundtracks.PACKAGES
    extra = set(cfg.packages[len(soundtracks.PACKAGES):])
    assert extra and set(cfg.split_overrides) == extra
    assert set(cfg.split_overrides.values()) <= {"train", "val"}
    assert cfg.limit is None and 0 < cfg.val_fraction + cfg.test_fraction < 1
    assert OmegaConf.to_container(cfg)["cache"] == "${paths.data}/cache/soundtracks_scan.json"


def test_rows_are_the_package_music_files(built, package):
    frame, _ = built
    manifest.validate(frame)
    music = {str(p) for p in soundtracks.select_audio(package, soundtracks.package_files(package))}
    assert len(frame) >= 1
    assert set(frame["path"]) <= music
    assert (frame["album"] == package).all() and (frame["artist"] == "").all() and (frame["genre"] == "").all()
    assert (frame["source"] == "soundtracks").all()
    assert (frame["duration_seconds"] >= 60.0).all()
    assert (frame["sample_rate"] > 0).all() and (frame["channels"] > 0).all()


def test_every_music_file_is_kept_or_skipped_with_a_reason(built, package):
    frame, skipped = built
    music = {str(p) for p in soundtracks.select_audio(package, soundtracks.package_files(package))}
    reasons = dict(zip(skipped["path"], skipped["error"]))
    assert set(frame["path"]) | (set(reasons) & music) == music
    short = [p for p, e in reasons.items() if e.startswith("shorter than 60 s")]
    assert short, "the game's sound effects are shorter than a minute"


def test_no_duplicate_content(built):
    frame, _ = built
    hashes = [sha1(p) for p in frame["path"]]
    assert len(set(hashes)) == len(hashes)


def test_missing_package_is_reported(built):
    _, skipped = built
    assert list(skipped.columns) == ["path", "error"]
    assert skipped[skipped["path"] == MISSING]["error"].tolist() == ["package not installed"]


def test_ids_and_splits(built, package):
    frame, _ = built
    assert all(manifest.TRACK_ID_PATTERN.match(t) for t in frame["track_id"])
    assert all(t.startswith(f"soundtracks:{package}:") for t in frame["track_id"])
    assert frame["track_id"].is_unique
    assert set(frame["split"]) == set(manifest.assign_group_splits([package], 0.1, 0.1, 0))


def test_rerun_is_identical(built, package):
    again, skipped = soundtracks.build_manifest(config([package, MISSING], None))
    assert again.equals(built[0])
    assert skipped.equals(built[1])


def test_copies_are_reported_as_duplicates(built, package, tmp_path, monkeypatch):
    frame, _ = built
    original = frame.sort_values("duration_seconds")["path"].iloc[-1]
    copy = tmp_path / "copy" / Path(original).name
    copy.parent.mkdir()
    shutil.copy(original, copy)
    real = soundtracks.package_files
    monkeypatch.setattr(soundtracks, "package_files", lambda p: [copy] if p == "fake-copies" else real(p))
    result, skipped = soundtracks.build_manifest(config([package, "fake-copies"], None))
    first, second = sorted([str(copy), original])
    assert first in set(result["path"]) and second not in set(result["path"])
    assert skipped[skipped["path"] == second]["error"].tolist() == [f"duplicate of {first}"]


def test_frets_on_fire_keeps_only_the_mix():
    paths = [Path(f"/usr/share/games/fretsonfire/data/songs/{song}/{name}")
             for song in ("a", "b") for name in ("song.ogg", "guitar.ogg", "rhythm.ogg", "notes.mid")]
    kept = soundtracks.select_audio("fretsonfire-songs-muldjord", paths)
    assert [p.as_posix() for p in kept] == [f"/usr/share/games/fretsonfire/data/songs/{s}/song.ogg" for s in ("a", "b")]
    assert len(soundtracks.select_audio("naev-data", paths)) == 6
    assert soundtracks.select_audio("x", [Path("/a/B.OGG"), Path("/a/c.png"), Path("/a/d.Mp3")]) == [
        Path("/a/B.OGG"), Path("/a/d.Mp3")]


def test_track_ids_are_valid_and_distinct():
    keys = [
        ("fretsonfire-songs-muldjord", Path("/s/songs/Rock On/song.ogg")),
        ("fretsonfire-songs-muldjord", Path("/s/songs/Blues/song.ogg")),
        ("naev-data", Path("/n/music/a b!.ogg")),
        ("naev-data", Path("/n/music/a_b_.ogg")),
        ("naev-data", Path("/n/other/a_b_.ogg")),
        ("wesnoth-1.16-music", Path("/w/theme.ogg")),
    ]
    ids = soundtracks.make_track_ids(keys)
    assert len(set(ids)) == len(ids)
    assert all(manifest.TRACK_ID_PATTERN.match(t) for t in ids)
    assert ids[0] == "soundtracks:fretsonfire-songs-muldjord:Rock_On_song"
    assert ids[5] == "soundtracks:wesnoth-1.16-music:theme"
    assert soundtracks.make_track_ids(keys[::-1]) == ids[::-1]  # independent of the order


def test_deduplicate(tmp_path):
    for name, data in {"b.ogg": b"one", "a.ogg": b"one", "c.ogg": b"two"}.items():
        (tmp_path / name).write_bytes(data)
    kept, skipped = soundtracks.deduplicate([tmp_path / n for n in ("c.ogg", "b.ogg", "a.ogg", "gone.ogg")])
    assert kept == [tmp_path / "a.ogg", tmp_path / "c.ogg"]
    assert {s["path"]: s["error"] for s in skipped}[str(tmp_path / "b.ogg")] == f"duplicate of {tmp_path / 'a.ogg'}"
    assert "cannot read the file" in {s["path"]: s["error"] for s in skipped}[str(tmp_path / "gone.ogg")]


def test_package_files_of_a_missing_package():
    with pytest.raises(soundtracks.PackageNotInstalled, match="package not installed"):
        soundtracks.package_files(MISSING)
