"""The FMA source end to end, against a loopback server holding a small FMA-shaped dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from songfeel import manifest as manifest_io
from songfeel.datasets import fma
from songfeel.datasets.download import ChecksumError, extract_zip
from tests.fma_server import (
    AUDIO,
    CORRUPT,
    KNOWN_BAD,
    LARGE_ONLY,
    MEDIUM_ONLY,
    MISSING,
    FileServer,
    build_fma_archives,
)

REPO = Path(__file__).resolve().parents[1]
SMALL_IDS = ["fma:000002", "fma:000003", "fma:000005", "fma:000134"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The served folder and the SHA1 of each archive in it."""
    www = tmp_path_factory.mktemp("www")
    return www, build_fma_archives(www)


@pytest.fixture
def server(archives):
    with FileServer(archives[0]) as files:
        yield files


def config(name, server, root, checksums, **extra):
    """conf/dataset/<name>.yaml with base_url, root and checksums pointing at the test data."""
    cfg = OmegaConf.load(REPO / f"conf/dataset/{name}.yaml")
    return OmegaConf.merge(cfg, {"base_url": server.url, "root": str(root), "checksums": checksums, **extra})


def small_config(server, archives, root, **extra):
    sums = archives[1]
    return config("fma_small", server, root, {k: sums[k] for k in ("fma_metadata.zip", "fma_small.zip")}, **extra)


def test_audio_path_follows_fma_layout(tmp_path):
    assert fma.audio_path(tmp_path, 2) == tmp_path / "000" / "000002.mp3"
    assert fma.audio_path(tmp_path, 155066) == tmp_path / "155" / "155066.mp3"


def test_every_config_names_its_two_archives_and_the_known_bad_tracks():
    for subset in ("small", "medium", "large", "full"):
        cfg = OmegaConf.load(REPO / f"conf/dataset/fma_{subset}.yaml")
        assert (cfg.name, cfg.subset) == (f"fma_{subset}", subset)
        assert set(cfg.checksums) == {"fma_metadata.zip", f"fma_{subset}.zip"}
        assert all(len(s) == 40 for s in cfg.checksums.values())
        assert list(cfg.known_bad_tracks) == [98565, 98567, 98569, 99134, 108925, 133297]
        assert list(cfg.label_columns) == ["genre"] and cfg.base_url == "https://os.unil.cloud.switch.ch/fma/"


def test_tracks_and_genres_csv_parse_and_subsets_nest(tmp_path, archives):
    fma_dir = tmp_path / "fma"
    extract_zip(archives[0] / "fma_metadata.zip", fma_dir)
    tracks = fma.load_tracks(fma_dir / "fma_metadata/tracks.csv")
    assert tracks.loc[3, ("track", "genres_all")] == "[25, 4, 12]"
    assert tracks.loc[3, ("set", "split")] == "validation"
    ids = {s: set(fma.select_subset(tracks, s).index) for s in ("small", "medium", "large", "full")}
    assert MEDIUM_ONLY not in ids["small"] and MEDIUM_ONLY in ids["medium"]
    assert LARGE_ONLY not in ids["medium"] and LARGE_ONLY in ids["large"]
    assert ids["small"] < ids["medium"] < ids["large"] == ids["full"] == set(tracks.index)
    with pytest.raises(ValueError, match="tiny"):
        fma.select_subset(tracks, "tiny")

    genres = fma.load_genres(fma_dir / "fma_metadata/genres.csv")
    depths = fma.genre_depths(genres)
    assert (depths[12], depths[25], depths[4]) == (0, 1, 2)
    assert fma.genre_titles(fma.parse_genre_ids("[25, 4, 12]"), genres, depths) == ["Rock", "Punk", "Oi"]
    with pytest.raises(ValueError, match="999"):
        fma.genre_titles([999], genres, depths)
    with pytest.raises(ValueError, match="not a list"):
        fma.parse_genre_ids("21, 38")


def test_load_tracks_names_the_file_and_missing_columns(tmp_path):
    bad = tmp_path / "tracks.csv"
    bad.write_text(",track\n,title\ntrack_id,\n2,x\n")
    with pytest.raises(fma.FmaError, match=r"tracks\.csv.*genre_top"):
        fma.load_tracks(bad)


def test_build_manifest_small_end_to_end(tmp_path, server, archives):
    root = tmp_path / "fma"
    manifest, skipped = fma.build_manifest(small_config(server, archives, root))

    manifest = manifest_io.validate(manifest)
    assert manifest["track_id"].tolist() == SMALL_IDS  # no medium/large-only, known-bad, corrupt or missing track
    rows = manifest.set_index("track_id")
    assert rows["genres"].to_dict() == {
        "fma:000002": "Hip-Hop",
        "fma:000003": "Rock|Punk|Oi",
        "fma:000005": "Electronic|Ambient Electronic",
        "fma:000134": "Hip-Hop|Experimental|Avant-Garde",  # two top-level genres (by id), then their child
    }
    assert rows["split"].to_dict() == {"fma:000002": "train", "fma:000003": "val", "fma:000005": "test",
                                       "fma:000134": "train"}
    assert rows["genre"].tolist() == ["Hip-Hop", "Rock", "Electronic", ""]
    assert rows["artist"].tolist() == ["1", "2", "3", "4"]
    assert rows["album"].tolist() == ["1", "4", "6", ""]
    assert set(rows["source"]) == {"fma_small"} and set(rows["mood"]) == set(rows["style"]) == {""}
    for track_id, row in rows.iterrows():
        number = int(track_id.split(":")[1])
        assert row["path"] == str((root / "fma_small" / f"{number:06d}"[:3] / f"{number:06d}.mp3").resolve())
        assert Path(row["path"]).is_file()
        assert (row["sample_rate"], row["channels"]) == AUDIO[number]
        assert row["duration_seconds"] == pytest.approx(3.0, abs=0.1)

    assert list(skipped.columns) == ["path", "error"]
    errors = {Path(p).name: e for p, e in zip(skipped["path"], skipped["error"])}
    assert set(errors) == {f"{CORRUPT:06d}.mp3", f"{MISSING:06d}.mp3", f"{KNOWN_BAD:06d}.mp3"}
    assert "cannot read header" in errors[f"{CORRUPT:06d}.mp3"]
    assert "fma_small.zip has no member fma_small/002/002001.mp3" in errors[f"{MISSING:06d}.mp3"]
    assert "known bad" in errors[f"{KNOWN_BAD:06d}.mp3"]
    # the downloads and the extraction landed in the persistent root
    assert (root / "fma_small.zip.sha1").is_file() and (root / "fma_metadata/tracks.csv").is_file()


def test_rerun_downloads_nothing_and_gives_the_same_manifest(tmp_path, server, archives):
    cfg = small_config(server, archives, tmp_path / "fma")
    first, first_skipped = fma.build_manifest(cfg)
    assert server.bytes_served == (archives[0] / "fma_metadata.zip").stat().st_size + (
        archives[0] / "fma_small.zip").stat().st_size
    server.reset_counters()
    second, second_skipped = fma.build_manifest(cfg)
    assert server.n_requests == 0
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first_skipped, second_skipped)


def test_medium_includes_small_and_its_own_tracks(tmp_path, server, archives):
    sums = archives[1]
    cfg = config("fma_medium", server, tmp_path / "fma",
                 {k: sums[k] for k in ("fma_metadata.zip", "fma_medium.zip")})
    manifest, skipped = fma.build_manifest(cfg)
    assert manifest["track_id"].tolist() == [*SMALL_IDS, f"fma:{MEDIUM_ONLY:06d}"]
    assert f"fma:{LARGE_ONLY:06d}" not in set(manifest["track_id"])
    assert set(manifest["source"]) == {"fma_medium"}
    assert all("/fma_medium/" in p for p in manifest["path"])
    assert manifest.set_index("track_id").at[f"fma:{MEDIUM_ONLY:06d}", "split"] == "val"
    assert len(skipped) == 3


def test_limit_keeps_the_first_usable_tracks_by_id(tmp_path, server, archives):
    manifest, _ = fma.build_manifest(small_config(server, archives, tmp_path / "fma", limit=3))
    assert manifest["track_id"].tolist() == SMALL_IDS[:3]


def test_bad_checksum_raises_and_never_extracts(tmp_path, server, archives):
    root = tmp_path / "fma"
    wrong = "f" * 40
    cfg = small_config(server, archives, root, retries=0)
    cfg.checksums["fma_small.zip"] = wrong
    with pytest.raises(ChecksumError, match="fma_small.zip") as info:
        fma.build_manifest(cfg)
    assert info.value.expected == wrong and info.value.actual == archives[1]["fma_small.zip"]
    assert not (root / "fma_small.zip").exists() and not (root / "fma_small.zip.part").exists()
    assert not (root / "fma_small").exists()


def test_a_missing_checksum_is_refused(tmp_path, server, archives):
    cfg = config("fma_small", server, tmp_path / "fma", {})
    cfg.checksums = {"fma_metadata.zip": archives[1]["fma_metadata.zip"]}
    with pytest.raises(fma.FmaError, match="no SHA1 for fma_small.zip"):
        fma.build_manifest(cfg)
    assert server.n_requests == 0  # checked before any download
