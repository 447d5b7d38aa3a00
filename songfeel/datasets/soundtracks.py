"""Game soundtracks shipped by Debian packages (``apt install wesnoth-1.16-music ...``).

Each configured package is a soundtrack: its audio files are found with
``dpkg -L``, deduplicated by content, probed with the local-library scanner
(:func:`songfeel.datasets.local.scan_files`: mutagen header and tags, truncation
check, scan cache) and kept when they last at least ``min_seconds`` (which
drops the games' sound effects). Labels: album = the package, no artist or
genre. Splits are soundtrack-disjoint.

Frets on Fire song packages hold, per song, ``song.ogg`` and separate stems
(``guitar.ogg``, sometimes ``rhythm.ogg``) that the game mixes while playing.
Only ``song.ogg`` is kept: it is the backing mix (in songs that ship a guitar
stem it lacks the lead guitar); the stems are left out rather than mixed,
because stage 01 only lists files and never writes audio.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from songfeel.datasets import local
from songfeel.errors import SongfeelError
from songfeel.hashing import sha1_file

log = logging.getLogger(__name__)

SOURCE = "soundtracks"
PACKAGES = (
    "wesnoth-1.16-music",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
    "supertux-data",
    "hedgewars-data",
    "naev-data",
    "freedroidrpg-data",
    "widelands-data",
    "flare-game",
    "megaglest-data",
    "openclonk-data",
    "extremetuxracer-data",
)
AUDIO_EXTENSIONS = ("ogg", "mp3", "flac", "wav", "opus")
FRETSONFIRE_PREFIX = "fretsonfire-songs"
FRETSONFIRE_MIX = "song.ogg"
NOT_INSTALLED = "package not installed"
#: Scan root of the packages' files: dpkg lists absolute paths.
FILESYSTEM_ROOT = Path("/")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")


class PackageNotInstalled(SongfeelError):
    """``dpkg -L`` does not know the package, or dpkg itself is missing."""


def package_files(package: str) -> list[Path]:
    """Every path the installed Debian ``package`` owns, as listed by ``dpkg -L``.

    Returns:
        absolute paths (files and folders), in dpkg's order.

    Raises:
        PackageNotInstalled: the package is not installed, or dpkg is missing
            (the message says which).
    """
    try:
        done = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise PackageNotInstalled(f"{NOT_INSTALLED} (dpkg not found: not a Debian system)") from exc
    if done.returncode != 0:
        raise PackageNotInstalled(NOT_INSTALLED)
    return [Path(line) for line in done.stdout.splitlines() if line.startswith("/")]


def select_audio(package: str, paths: Iterable[Path], extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """The music files among a package's ``paths``, sorted.

    Keeps paths with an audio extension (case-insensitive); for a Frets on
    Fire song package, only the ``song.ogg`` mixes, not the instrument stems.
    Existence on disk is not checked here.
    """
    wanted = local.normalize_extensions(extensions)
    kept = [p for p in paths if p.suffix.lower().lstrip(".") in wanted]
    if package.startswith(FRETSONFIRE_PREFIX):
        stems = [p for p in kept if p.name.lower() != FRETSONFIRE_MIX]
        kept = [p for p in kept if p.name.lower() == FRETSONFIRE_MIX]
        log.info("%s: keeping %d song.ogg mixes, leaving out %d instrument stems", package, len(kept), len(stems))
    return sorted(kept)


def deduplicate(paths: Sequence[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Drop files whose bytes equal those of an earlier file, in sorted path order.

    Returns:
        the first file of each content, sorted, and the skipped ones
        (``{"path", "error"}``: ``duplicate of <path>``, or why it cannot be read).
    """
    first_of: dict[str, Path] = {}
    kept, skipped = [], []
    for path in sorted(paths):
        try:
            digest = sha1_file(path, progress=False)
        except OSError as exc:
            skipped.append({"path": str(path), "error": f"cannot read the file: {exc.strerror or exc}"})
            continue
        if digest in first_of:
            skipped.append({"path": str(path), "error": f"duplicate of {first_of[digest]}"})
            continue
        first_of[digest] = path
        kept.append(path)
    return kept, skipped


def make_track_ids(keys: Sequence[tuple[str, Path]]) -> list[str]:
    """``soundtracks:<package>:<file stem>`` ids, valid and unique.

    Characters outside ``[A-Za-z0-9_.:-]`` become ``_``. Files whose ids
    collide (e.g. every Frets on Fire ``song.ogg``) are told apart by their
    folder (``<folder>_<stem>``), then by the first 8 hex digits of the sha1
    of their path. The ids depend only on the paths, not on their order.

    Args:
        keys: ``(package, path)`` of each file; the paths are distinct.

    Returns:
        one id per entry of ``keys``, in order.
    """

    def clean(package: str, name: str) -> str:
        return _BAD_ID_CHARS.sub("_", f"{SOURCE}:{package}:{name}")

    by_stem = [clean(package, path.stem) for package, path in keys]
    by_folder = _redo_collisions(by_stem, lambda i: clean(keys[i][0], f"{keys[i][1].parent.name}_{keys[i][1].stem}"))
    return _redo_collisions(
        by_folder, lambda i: f"{by_folder[i]}_{hashlib.sha1(str(keys[i][1]).encode('utf-8')).hexdigest()[:8]}"
    )


def _redo_collisions(ids: list[str], rename) -> list[str]:
    """``ids`` where each id shared by several entries is replaced by ``rename(index)``."""
    counts: dict[str, int] = {}
    for track_id in ids:
        counts[track_id] = counts.get(track_id, 0) + 1
    return [rename(i) if counts[track_id] > 1 else track_id for i, track_id in enumerate(ids)]


def find_soundtrack_files(packages: Iterable[str]) -> tuple[list[tuple[str, Path]], list[dict[str, str]]]:
    """The music files of each package, as ``(package, path)``, and the skipped packages and files.

    A package that is not installed is logged and reported with ``path`` = its
    name and ``error`` = ``package not installed``; a listed file missing from
    disk is reported too. Files are deduplicated across all packages by
    content (:func:`deduplicate`).
    """
    owner: dict[Path, str] = {}
    skipped: list[dict[str, str]] = []
    for package in packages:
        try:
            listed = package_files(package)
        except PackageNotInstalled as exc:
            log.warning("%s: %s, skipped", package, exc)
            skipped.append({"path": package, "error": str(exc)})
            continue
        audio = select_audio(package, listed)
        log.info("%s: %d audio files listed", package, len(audio))
        for path in audio:
            if not path.is_file():
                skipped.append({"path": str(path), "error": f"listed by dpkg for {package} but missing from disk"})
            else:
                owner.setdefault(path, package)
    unique, duplicates = deduplicate(list(owner))
    return [(owner[p], p) for p in unique], skipped + duplicates


def build_manifest(dataset_cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest of the installed game soundtracks with soundtrack-disjoint splits.

    Args:
        dataset_cfg: the ``dataset`` config group (``conf/dataset/soundtracks.yaml``):
            ``packages``, ``min_seconds`` (shortest track kept, seconds),
            ``check_truncation``, ``cache`` (JSON scan cache, or null),
            ``val_fraction``, ``test_fraction``, ``seed`` and ``limit``
            (first N tracks by id, or null).

    Returns:
        the manifest (see :mod:`songfeel.manifest`) and the skipped packages and
        files (``path, error``).

    Raises:
        ValueError: invalid split fractions.
        OSError: the scan cache cannot be written.
    """
    min_seconds = float(dataset_cfg["min_seconds"])
    files, skipped = find_soundtrack_files(list(dataset_cfg["packages"]))
    package_of = {path: package for package, path in files}
    scanned, unusable = local.scan_files(
        FILESYSTEM_ROOT,
        [path for _, path in files],
        cache_path=dataset_cfg.get("cache"),
        check_truncation=bool(dataset_cfg.get("check_truncation", True)),
        desc="probing soundtracks",
    )
    skipped += unusable
    long_enough = []
    for item in scanned:
        seconds = float(item.probe["duration_seconds"])
        if seconds < min_seconds:
            skipped.append({"path": str(item.path), "error": f"shorter than {min_seconds:g} s ({seconds:.2f} s)"})
        else:
            long_enough.append(item)
    ids = make_track_ids([(package_of[item.path], item.path) for item in long_enough])
    rows = [
        local.library_row(track_id, item, {"artist": "", "album": package_of[item.path], "genre": ""}, SOURCE)
        for track_id, item in zip(ids, long_enough)
    ]
    groups = {row["track_id"]: row["album"] for row in rows}
    log.info("%d soundtrack files kept (at least %g s), %d skipped", len(rows), min_seconds, len(skipped))
    return local.finish_manifest(rows, dataset_cfg, groups), local.skipped_frame(skipped)


__all__ = [
    "PACKAGES",
    "PackageNotInstalled",
    "build_manifest",
    "deduplicate",
    "find_soundtrack_files",
    "make_track_ids",
    "package_files",
    "select_audio",
]
