"""A listener's own music library: every audio file under a folder.

Each file's header (duration, sample rate, channels) and tags (artist, album,
genre) are read with mutagen, which parses the headers of MP3, Ogg (Vorbis,
Opus), FLAC, WAV and M4A without decoding; soundfile reads the header where
mutagen cannot. A cheap integrity check then catches truncated files (see
:func:`check_complete`). Bad files never stop the scan: they are reported as
skipped, with the cause.

Labels come from the tags, from the folder names, or from the tags with the
folders as a fallback (``label_source``). Splits are artist-disjoint, else
album-disjoint, else folder-disjoint (:func:`songfeel.manifest.assign_group_splits`).

A JSON scan cache keyed by library root and relative path, with each file's
size and mtime, lets a rerun probe only the new or changed files.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mutagen
import pandas as pd
import soundfile as sf
from mutagen.ogg import OggFileType, OggPage
from mutagen.oggopus import OggOpusInfo
from tqdm import tqdm

from songfeel import manifest as manifest_io
from songfeel.audio import audio_info
from songfeel.datasets.scan_cache import ScanCache, file_signature
from songfeel.errors import AudioDecodeError, AudioError

log = logging.getLogger(__name__)

SOURCE = "local"
DEFAULT_EXTENSIONS = ("mp3", "ogg", "opus", "flac", "wav", "m4a")
TAG_LABELS = ("artist", "album", "genre")
LABEL_SOURCES = ("tags", "folders", "tags_then_folders")
DEFAULT_FOLDER_LEVELS = {"artist": 2, "album": 1}

#: Opus always decodes at 48 kHz (RFC 7845, section 5.1); mutagen reports no rate for it.
OPUS_SAMPLE_RATE = 48000
#: Length of the end of a file that :func:`check_complete` decodes, in seconds.
TAIL_SECONDS = 0.25
#: How much shorter than its header a file may decode before it counts as truncated, in seconds.
LENGTH_TOLERANCE_SECONDS = 0.05
#: ID3 frames holding each label where mutagen gives raw (not "easy") ID3 tags, as in WAV.
ID3_FRAMES = {"artist": "TPE1", "album": "TALB", "genre": "TCON"}
#: Bump when the probe's output changes, so that old caches are not reused.
PROBE_VERSION = 1

MUTAGEN_ERRORS = (mutagen.MutagenError, OSError)
SOUNDFILE_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, OSError)


@dataclass(frozen=True)
class ScannedFile:
    """One audio file of a scan that passed the probe.

    Attributes:
        path: absolute path of the file.
        relative: path relative to the scan root, posix form.
        probe: what :func:`probe_file` returned (header and tags).
    """

    path: Path
    relative: str
    probe: dict


# ---------------------------------------------------------------- finding files


def normalize_extensions(extensions: Iterable[str]) -> frozenset[str]:
    """Lower-case extensions without their leading dot (``".MP3"`` -> ``"mp3"``)."""
    return frozenset(e.lower().lstrip(".") for e in extensions)


def find_audio_files(root: str | Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` whose extension is one of ``extensions``.

    The match is case-insensitive; symbolic links to folders are not followed.

    Args:
        root: the library folder.
        extensions: extensions with or without the dot (``mp3``, ``.flac``).

    Returns:
        absolute paths, sorted by their path relative to ``root``.

    Raises:
        NotADirectoryError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: the library folder does not exist or is not a folder")
    wanted = normalize_extensions(extensions)
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if Path(name).suffix.lower().lstrip(".") in wanted:
                found.append(Path(folder) / name)
    return sorted(found, key=lambda p: relative_posix(p, root))


def relative_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, in posix form (``Artist/Album/01.flac``)."""
    return path.relative_to(root).as_posix()


# ---------------------------------------------------------------- probing one file


def probe_file(path: str | Path, check_truncation: bool = True) -> dict:
    """Header and tags of one audio file, read without decoding it.

    Args:
        path: the audio file.
        check_truncation: also run :func:`check_complete` (decodes the last
            fraction of a second of the file).

    Returns:
        dict with ``duration_seconds`` (float, seconds), ``sample_rate`` (Hz),
        ``channels`` (int) and the tags ``artist``, ``album``, ``genre`` (str,
        '' where missing).

    Raises:
        AudioDecodeError: the file is missing, empty, not audio, its header
            cannot be read, it holds no audio (duration 0 s) or it is truncated.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    if size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    audio, mutagen_problem = open_with_mutagen(path)
    header = header_from_mutagen(audio)
    if header is None:
        header = header_from_soundfile(path, mutagen_problem)
    if not (math.isfinite(header["duration_seconds"]) and header["duration_seconds"] > 0):
        raise AudioDecodeError(path, "no audio: the header gives a duration of 0 s")
    if check_truncation:
        check_complete(path, header["duration_seconds"], audio)
    return {**header, **read_tags(audio)}


def open_with_mutagen(path: Path) -> tuple[mutagen.FileType | None, str]:
    """Parse ``path`` with ``mutagen.File(path, easy=True)``.

    Returns:
        the parsed file, or None with the reason mutagen could not parse it.
    """
    try:
        audio = mutagen.File(path, easy=True)
    except MUTAGEN_ERRORS as exc:
        return None, f"mutagen: {exc}"
    if audio is None:
        return None, "mutagen: unknown format"
    return audio, ""


def header_from_mutagen(audio: mutagen.FileType | None) -> dict | None:
    """Duration (s), sample rate (Hz) and channels from mutagen's stream info.

    Returns:
        the header, or None where mutagen lacks any of the three or gives a
        duration of 0 s (soundfile is then asked instead).
    """
    if audio is None or audio.info is None:
        return None
    info = audio.info
    length = getattr(info, "length", None)
    channels = getattr(info, "channels", None)
    sample_rate = getattr(info, "sample_rate", None)
    if not sample_rate and isinstance(info, OggOpusInfo):
        sample_rate = OPUS_SAMPLE_RATE
    if not (length and sample_rate and channels):
        return None
    return {"duration_seconds": float(length), "sample_rate": int(sample_rate), "channels": int(channels)}


def header_from_soundfile(path: Path, mutagen_problem: str) -> dict:
    """The header as read by soundfile (:func:`songfeel.audio.audio_info`).

    Raises:
        AudioDecodeError: soundfile cannot read it either; the message gives
            both mutagen's and soundfile's reasons.
    """
    try:
        return audio_info(path)
    except AudioDecodeError as exc:
        reasons = "; ".join(r for r in (mutagen_problem, f"soundfile: {exc.cause}") if r)
        raise AudioDecodeError(path, f"not a readable audio file ({reasons})") from exc


def check_complete(path: str | Path, duration_seconds: float, audio: mutagen.FileType | None = None) -> None:
    """Check that a file is not truncated, e.g. by an interrupted download.

    Ogg files must end with their stream's end-of-stream page (a cut Ogg file
    otherwise just looks shorter). Other files that soundfile reads must hold
    the ``duration_seconds`` their header declares, and their last
    ``TAIL_SECONDS`` must decode. Files soundfile cannot open (M4A) are not
    checked.

    Args:
        path: the audio file.
        duration_seconds: the duration its header declares, in seconds.
        audio: the file as parsed by mutagen, if it could.

    Raises:
        AudioDecodeError: the file is truncated, naming what is missing.
    """
    path = Path(path)
    serial = getattr(getattr(audio, "info", None), "serial", None)
    if isinstance(audio, OggFileType) and serial is not None:
        check_ogg_end(path, serial)
        return
    check_tail_decodes(path, duration_seconds)


def check_ogg_end(path: Path, serial: int) -> None:
    """Raise :class:`AudioDecodeError` unless the Ogg stream ``serial`` ends with its end-of-stream page."""
    try:
        with path.open("rb") as handle:
            last = OggPage.find_last(handle, serial)
    except MUTAGEN_ERRORS as exc:
        raise AudioDecodeError(path, f"truncated: cannot read the last Ogg page ({exc})") from exc
    if last is None or not last.last:
        raise AudioDecodeError(path, "truncated: the Ogg stream ends without its end-of-stream page")


def check_tail_decodes(path: Path, duration_seconds: float) -> None:
    """Raise :class:`AudioDecodeError` if the file's last ``TAIL_SECONDS`` are missing or cannot be decoded."""
    try:
        handle = sf.SoundFile(path)
    except SOUNDFILE_ERRORS:
        return  # a format only mutagen reads (M4A): nothing more to check without decoding
    with handle:
        frames = handle.frames
        available = frames / handle.samplerate
        if available < duration_seconds - LENGTH_TOLERANCE_SECONDS:
            raise AudioDecodeError(
                path, f"truncated: holds {available:.2f} s of the {duration_seconds:.2f} s its header declares"
            )
        wanted = min(frames, max(1, int(TAIL_SECONDS * handle.samplerate)))
        try:
            handle.seek(frames - wanted)
            got = handle.read(wanted, dtype="float32").shape[0]
        except SOUNDFILE_ERRORS as exc:
            raise AudioDecodeError(path, f"truncated: the end of the audio cannot be decoded ({exc})") from exc
    if got < wanted:
        raise AudioDecodeError(path, f"truncated: the last {wanted - got} of {frames} frames are missing")


def read_tags(audio: mutagen.FileType | None) -> dict[str, str]:
    """The ``artist``, ``album`` and ``genre`` tags of a parsed file, '' where missing.

    Reads "easy" tags (Vorbis comments, EasyID3, EasyMP4) and raw ID3 frames
    (as in WAV files). A tag with several values gives its first non-empty one.
    """
    tags = getattr(audio, "tags", None)
    if tags is None:
        return {label: "" for label in TAG_LABELS}
    return {label: tag_text(tags, label) for label in TAG_LABELS}


def tag_text(tags: Mapping, label: str) -> str:
    """First non-empty text of tag ``label`` (or its ID3 frame) in ``tags``, stripped; '' if none."""
    for key in (label, ID3_FRAMES[label]):
        try:
            value = tags.get(key)
        except (KeyError, ValueError):  # easy tag classes refuse keys they do not map
            value = None
        if value is None:
            continue
        texts = getattr(value, "text", value)
        if isinstance(texts, str):
            texts = [texts]
        for text in texts:
            if str(text).strip():
                return str(text).strip()
    return ""


# ---------------------------------------------------------------- scanning


def scan_files(
    root: str | Path,
    files: Sequence[Path],
    cache_path: str | Path | None = None,
    check_truncation: bool = True,
    desc: str = "probing audio files",
) -> tuple[list[ScannedFile], list[dict[str, str]]]:
    """Probe ``files`` (all under ``root``), reusing cached results of unchanged files.

    Args:
        root: the folder the cache keys are relative to.
        files: absolute paths under ``root``.
        cache_path: JSON scan cache (None: no cache).
        check_truncation: passed to :func:`probe_file`.
        desc: label of the progress bar.

    Returns:
        the files that passed, in the order of ``files``, and the skipped ones
        as ``{"path", "error"}`` dicts.

    Raises:
        ValueError: a file is not under ``root``.
        OSError: the cache cannot be written.
    """
    root = Path(root)
    key = str(root)
    cache = ScanCache(cache_path, {"probe_version": PROBE_VERSION, "check_truncation": bool(check_truncation)})
    cached = cache.entries(key)
    fresh: dict[str, dict] = {}
    scanned, skipped = [], []
    reused = probed = 0
    for path in tqdm(files, desc=desc, unit="file"):
        relative = relative_posix(path, root)
        signature = file_signature(path)
        entry = cached.get(relative)
        if signature is not None and entry is not None and entry.get("signature") == signature:
            reused += 1
        else:
            entry = {"signature": signature, **probe_entry(path, check_truncation)}
            probed += 1
        fresh[relative] = entry
        if entry.get("error"):
            skipped.append({"path": str(path), "error": entry["error"]})
        else:
            scanned.append(ScannedFile(path=path, relative=relative, probe=entry["probe"]))
    log.info("%s (under %s): %d files, %d reused from the scan cache, %d probed; %d usable, %d skipped",
             desc, root, len(files), reused, probed, len(scanned), len(skipped))
    cache.replace(key, fresh)
    cache.save()
    return scanned, skipped


def probe_entry(path: Path, check_truncation: bool) -> dict:
    """A cache entry for ``path``: ``{"probe": dict}`` or ``{"error": reason}``."""
    try:
        return {"probe": probe_file(path, check_truncation=check_truncation)}
    except AudioError as exc:
        return {"error": exc.cause}


def scan_library(
    root: str | Path,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    cache_path: str | Path | None = None,
    check_truncation: bool = True,
) -> tuple[list[ScannedFile], list[dict[str, str]]]:
    """Find and probe every audio file under ``root`` (see :func:`scan_files`).

    Raises:
        NotADirectoryError: ``root`` is not a folder.
        OSError: the cache cannot be written.
    """
    root = Path(root).expanduser().resolve()
    files = find_audio_files(root, extensions)
    return scan_files(root, files, cache_path=cache_path, check_truncation=check_truncation,
                      desc=f"scanning {root.name or root}")


# ---------------------------------------------------------------- labels, ids, splits


def folder_label(relative: str, level: int) -> str:
    """Name of the folder ``level`` steps above a file (1 = its parent folder).

    Only folders inside the library count: a level that reaches the library
    root or above gives ''.

    Raises:
        ValueError: ``level`` is less than 1.
    """
    if level < 1:
        raise ValueError(f"folder level must be 1 or more, got {level}")
    folders = PurePosixPath(relative).parts[:-1]
    return folders[-level] if level <= len(folders) else ""


def check_label_config(label_source: str, folder_levels: Mapping[str, int] | None) -> dict[str, int]:
    """Validate the label settings and return the folder levels (defaults if None).

    Raises:
        ValueError: unknown ``label_source``, a label in ``folder_levels`` other
            than artist/album/genre, or a level below 1.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    levels = {str(k): int(v) for k, v in (DEFAULT_FOLDER_LEVELS if folder_levels is None else folder_levels).items()}
    unknown = sorted(set(levels) - set(TAG_LABELS))
    if unknown:
        raise ValueError(f"folder_levels names unknown labels {unknown}; known: {list(TAG_LABELS)}")
    low = {k: v for k, v in levels.items() if v < 1}
    if low:
        raise ValueError(f"folder_levels must be 1 (parent folder) or more, got {low}")
    return levels


def file_labels(
    tags: Mapping[str, str],
    relative: str,
    label_source: str = "tags_then_folders",
    folder_levels: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Artist, album and genre of one file.

    A label named in ``folder_levels`` comes from its tag (``tags``), its
    folder (``folders``) or its tag if set, else its folder
    (``tags_then_folders``). A label not named there (genre by default) comes
    from its tag only.

    Raises:
        ValueError: unknown ``label_source`` or label in ``folder_levels``.
    """
    levels = check_label_config(label_source, folder_levels)
    labels = {}
    for label in TAG_LABELS:
        tag = tags.get(label, "") or ""
        if label not in levels or label_source == "tags" or (label_source == "tags_then_folders" and tag):
            labels[label] = tag
        else:
            labels[label] = folder_label(relative, int(levels[label]))
    return labels


def local_track_id(relative: str) -> str:
    """``local:`` + the first 16 hex digits of the sha1 of the file's relative posix path."""
    return f"{SOURCE}:{hashlib.sha1(relative.encode('utf-8')).hexdigest()[:16]}"


def split_group(artist: str, album: str, relative: str) -> str:
    """Key of the group a track's split follows: its artist, else album, else folder.

    Artist and album names are compared case-insensitively.
    """
    if artist.strip():
        return f"artist:{artist.strip().casefold()}"
    if album.strip():
        return f"album:{album.strip().casefold()}"
    return f"folder:{PurePosixPath(relative).parent.as_posix()}"


def finish_manifest(rows: list[dict], dataset_cfg, group_keys: Mapping[str, str]) -> pd.DataFrame:
    """Sort ``rows`` by track id, keep the first ``limit`` and add group-disjoint splits.

    Args:
        rows: manifest rows without ``split``.
        dataset_cfg: needs ``val_fraction``, ``test_fraction``, ``seed``; optional
            ``limit`` and ``split_overrides`` (group key -> split).
        group_keys: the split group of each track id.

    Returns:
        the manifest, columns in the order of :data:`songfeel.manifest.COLUMNS`.

    Raises:
        ValueError: the split fractions are invalid.
    """
    frame = pd.DataFrame(rows, columns=[c for c in manifest_io.COLUMNS if c != "split"])
    frame = frame.sort_values("track_id").reset_index(drop=True)
    limit = dataset_cfg.get("limit")
    if limit:
        frame = frame.head(int(limit)).reset_index(drop=True)
    frame["split"] = manifest_io.assign_group_splits(
        [group_keys[t] for t in frame["track_id"]],
        val_fraction=float(dataset_cfg.val_fraction),
        test_fraction=float(dataset_cfg.test_fraction),
        seed=int(dataset_cfg.seed),
        overrides=dict(dataset_cfg.get("split_overrides") or {}),
    )
    return frame.loc[:, list(manifest_io.COLUMNS)]


def skipped_frame(skipped: list[dict[str, str]]) -> pd.DataFrame:
    """The skipped files as a frame with columns ``path, error``."""
    return pd.DataFrame(skipped, columns=list(manifest_io.SKIPPED_COLUMNS))


def build_manifest(dataset_cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest of a local music library with artist/album/folder-disjoint splits.

    Args:
        dataset_cfg: the ``dataset`` config group (``conf/dataset/local.yaml``):
            ``path`` (library folder), ``extensions``, ``label_source``,
            ``folder_levels``, ``check_truncation``, ``cache`` (JSON scan
            cache, or null), ``val_fraction``, ``test_fraction``, ``seed`` and
            ``limit`` (first N tracks by id, or null).

    Returns:
        the manifest (see :mod:`songfeel.manifest`) and the skipped files (``path, error``).

    Raises:
        NotADirectoryError: ``path`` is not a folder.
        ValueError: a bad ``label_source``, ``folder_levels`` or split fraction.
        OSError: the scan cache cannot be written.
    """
    root = Path(str(dataset_cfg.path)).expanduser().resolve()
    label_source = str(dataset_cfg.get("label_source", "tags_then_folders"))
    folder_levels = check_label_config(label_source, dataset_cfg.get("folder_levels"))
    scanned, skipped = scan_library(
        root,
        extensions=dataset_cfg.get("extensions", DEFAULT_EXTENSIONS),
        cache_path=dataset_cfg.get("cache"),
        check_truncation=bool(dataset_cfg.get("check_truncation", True)),
    )
    rows, groups = [], {}
    for item in scanned:
        labels = file_labels(item.probe, item.relative, label_source, folder_levels)
        track_id = local_track_id(item.relative)
        groups[track_id] = split_group(labels["artist"], labels["album"], item.relative)
        rows.append(library_row(track_id, item, labels))
    return finish_manifest(rows, dataset_cfg, groups), skipped_frame(skipped)


def library_row(track_id: str, item: ScannedFile, labels: Mapping[str, str], source: str = SOURCE) -> dict:
    """One manifest row (without ``split``) of a probed file; ``labels`` holds artist, album and genre."""
    return {
        "track_id": track_id,
        "source": source,
        "path": str(item.path),
        "duration_seconds": float(item.probe["duration_seconds"]),
        "sample_rate": int(item.probe["sample_rate"]),
        "channels": int(item.probe["channels"]),
        **labels,
        "genres": labels["genre"],
        "mood": "",
        "style": "",
    }
