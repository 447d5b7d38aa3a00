"""The Free Music Archive dataset (FMA, mdeff/fma, https://github.com/mdeff/fma).

Archives (from ``dataset.base_url``, each checked against its published SHA1):

* ``fma_metadata.zip``: ``fma_metadata/tracks.csv`` (one row per track, a
  two-row column header such as ``('track', 'genre_top')``) and
  ``fma_metadata/genres.csv`` (the genre tree: ``genre_id, #tracks, parent,
  title, top_level``);
* ``fma_<subset>.zip``: MP3 files laid out ``fma_<subset>/000/000002.mp3``
  (folder = first three digits of the six-digit, zero-padded track id).

Subsets nest: small (8,000 30 s clips) is part of medium (25,000), which is part
of large (106,574); ``tracks.csv`` names the smallest subset holding each track.
``full`` has every track, untrimmed. Splits are FMA's official, artist-disjoint
``training``/``validation``/``test`` split.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from songfeel import manifest as manifest_io
from songfeel.audio import audio_info
from songfeel.datasets.download import download, extract_zip
from songfeel.errors import AudioDecodeError, AudioError, SongfeelError

log = logging.getLogger(__name__)

#: Nested subsets, smallest first; ``full`` is every track of tracks.csv.
SUBSETS = ("small", "medium", "large")
#: FMA's split names -> the manifest's.
SPLITS = {"training": "train", "validation": "val", "test": "test"}
#: The columns of tracks.csv that the manifest uses.
TRACK_COLUMNS = {
    "genre_top": ("track", "genre_top"),
    "genres_all": ("track", "genres_all"),
    "artist": ("artist", "id"),
    "album": ("album", "id"),
    "subset": ("set", "subset"),
    "split": ("set", "split"),
}
GENRE_COLUMNS = ("parent", "title", "top_level")
METADATA_ARCHIVE = "fma_metadata.zip"


class FmaError(SongfeelError):
    """FMA metadata or configuration that cannot be used (names the file and the cause)."""


def load_tracks(path: str | Path) -> pd.DataFrame:
    """Read FMA's ``tracks.csv``.

    Args:
        path: ``fma_metadata/tracks.csv``.

    Returns:
        one row per track, indexed by the integer track id, with FMA's
        two-level columns (e.g. ``('track', 'genres_all')``, ``('set', 'split')``).

    Raises:
        FmaError: the file is missing or unreadable, its index is not integer
            track ids, or it lacks a column of :data:`TRACK_COLUMNS`.
    """
    path = Path(path)
    try:
        tracks = pd.read_csv(path, index_col=0, header=[0, 1])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise FmaError(f"{path}: cannot read tracks.csv: {exc}") from exc
    missing = [c for c in TRACK_COLUMNS.values() if c not in tracks.columns]
    if missing:
        raise FmaError(f"{path}: tracks.csv lacks columns {missing}")
    if not pd.api.types.is_integer_dtype(tracks.index):
        raise FmaError(f"{path}: the first column must hold integer track ids")
    return tracks


def load_genres(path: str | Path) -> pd.DataFrame:
    """Read FMA's ``genres.csv``, the genre tree.

    Returns:
        indexed by integer ``genre_id``, with columns ``#tracks``, ``parent``
        (0 for a top-level genre), ``title`` and ``top_level``.

    Raises:
        FmaError: the file is missing or unreadable, or lacks a column.
    """
    path = Path(path)
    try:
        genres = pd.read_csv(path, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise FmaError(f"{path}: cannot read genres.csv: {exc}") from exc
    missing = [c for c in GENRE_COLUMNS if c not in genres.columns]
    if missing:
        raise FmaError(f"{path}: genres.csv lacks columns {missing}")
    genres.index = genres.index.astype(int)
    return genres


def audio_path(audio_dir: str | Path, track_id: int) -> Path:
    """Where FMA keeps a track: ``<audio_dir>/000/000002.mp3`` for track 2."""
    name = f"{int(track_id):06d}"
    return Path(audio_dir) / name[:3] / f"{name}.mp3"


def check_subset(subset: str) -> str:
    """Return ``subset`` if it is small, medium, large or full.

    Raises:
        ValueError: it is not.
    """
    if subset != "full" and subset not in SUBSETS:
        raise ValueError(f"unknown FMA subset {subset!r}; known: {[*SUBSETS, 'full']}")
    return subset


def select_subset(tracks: pd.DataFrame, subset: str) -> pd.DataFrame:
    """The rows of ``tracks`` in ``subset``; subsets nest (small in medium in large).

    Raises:
        ValueError: ``subset`` is not small, medium, large or full.
    """
    if check_subset(subset) == "full":
        return tracks
    included = SUBSETS[: SUBSETS.index(subset) + 1]
    return tracks[tracks[TRACK_COLUMNS["subset"]].isin(included)]


def genre_depths(genres: pd.DataFrame) -> dict[int, int]:
    """Depth of each genre in the tree: 0 for a top-level genre, 1 for its children...

    Raises:
        FmaError: the parent links form a cycle.
    """
    parents = {int(g): int(p) for g, p in genres["parent"].items()}
    depths = {}
    for genre in parents:
        node, seen = genre, {genre}
        while parents.get(node, 0) != 0:
            node = parents[node]
            if node in seen:
                raise FmaError(f"genres.csv: the parents of genre {genre} form a cycle")
            seen.add(node)
        depths[genre] = len(seen) - 1
    return depths


def parse_genre_ids(text) -> list[int]:
    """Genre ids of a ``genres_all`` cell such as ``"[21, 38]"`` (empty or NaN: none).

    Raises:
        ValueError: the cell is not a bracketed list of integers.
    """
    if not isinstance(text, str) and pd.isna(text):
        return []
    inner = str(text).strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"genres_all {text!r} is not a list of genre ids")
    inner = inner[1:-1].strip()
    try:
        return [int(token) for token in inner.split(",")] if inner else []
    except ValueError as exc:
        raise ValueError(f"genres_all {text!r} is not a list of genre ids") from exc


def genre_titles(genre_ids: list[int], genres: pd.DataFrame, depths: dict[int, int]) -> list[str]:
    """Titles of ``genre_ids``, most general first: by depth in the tree, then by id.

    Raises:
        ValueError: an id is not in genres.csv.
    """
    unknown = [g for g in genre_ids if g not in depths]
    if unknown:
        raise ValueError(f"genre ids {unknown} are not in genres.csv")
    ordered = sorted(set(genre_ids), key=lambda g: (depths[g], g))
    return [str(genres.at[g, "title"]) for g in ordered]


def _label(value) -> str:
    """A metadata cell as a manifest label: ids as integers, missing as ''."""
    if not isinstance(value, str) and pd.isna(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fetch(dataset_cfg, subset: str, root: Path) -> tuple[Path, Path, Path]:
    """Download, verify and extract the metadata and audio archives of ``subset`` into ``root``.

    Returns:
        the metadata folder, the audio folder and the audio archive.

    Raises:
        FmaError: ``dataset.checksums`` lacks an archive, or an archive does not
            hold the expected top folder.
        ChecksumError, DownloadError, ArchiveError: see :mod:`songfeel.datasets.download`.
    """
    base_url = str(dataset_cfg.base_url).rstrip("/") + "/"
    checksums = dataset_cfg.get("checksums") or {}
    retries = int(dataset_cfg["retries"])
    archives = (METADATA_ARCHIVE, f"fma_{subset}.zip")
    for archive in archives:
        if not checksums.get(archive):
            raise FmaError(f"{root / archive}: dataset.checksums has no SHA1 for {archive}; "
                           "refusing to use an unverified archive")
    folders = []
    for archive in archives:
        path = download(base_url + archive, root / archive, sha1=str(checksums[archive]), retries=retries)
        extract_zip(path, root)
        folder = root / archive.removesuffix(".zip")
        if not folder.is_dir():
            raise FmaError(f"{path}: the archive has no top folder {folder.name}/")
        folders.append(folder)
    return folders[0], folders[1], root / f"fma_{subset}.zip"


def _missing_cause(path: Path, audio_zip: Path, members: set[str]) -> str:
    """Why an expected audio file is not on disk."""
    member = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    if member in members:
        return f"member {member} of {audio_zip.name} could not be extracted (see the log)"
    return f"not in the archive: {audio_zip.name} has no member {member}"


def _track_row(track_id: int, record, path: Path, genres: pd.DataFrame, depths: dict[int, int], source: str) -> dict:
    """One manifest row; raises AudioError or ValueError (naming the cause) for an unusable track."""
    split = SPLITS.get(record.split)
    if split is None:
        raise ValueError(f"tracks.csv: track {track_id} has unknown split {record.split!r}")
    try:
        titles = genre_titles(parse_genre_ids(record.genres_all), genres, depths)
    except ValueError as exc:
        raise ValueError(f"tracks.csv: track {track_id}: {exc}") from exc
    return {
        "track_id": f"fma:{track_id:06d}",
        "source": source,
        "path": str(path),
        **audio_info(path),
        "artist": _label(record.artist),
        "album": _label(record.album),
        "genre": _label(record.genre_top),
        "genres": "|".join(titles),
        "mood": "",
        "style": "",
        "split": split,
    }


def build_manifest(dataset_cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest of an FMA subset, with FMA's official splits.

    Downloads (resuming, SHA1-verified, skipped when already there) and
    extracts ``fma_metadata.zip`` and ``fma_<subset>.zip`` into
    ``dataset.root``, selects the subset's tracks, drops the known-bad ones
    and reads each MP3's header (not its audio). Labels: artist and album are
    FMA ids as strings, genre is ``genre_top`` ('' when FMA gives none),
    genres the titles of ``genres_all``, most general first, joined by '|'.

    Args:
        dataset_cfg: needs ``name``, ``subset`` (small, medium, large, full),
            ``base_url``, ``root``, ``checksums`` (archive name -> SHA1); optional
            ``known_bad_tracks`` (track ids), ``retries`` and ``limit`` (first N
            usable tracks by id).

    Returns:
        the manifest (see :mod:`songfeel.manifest`) and the skipped files
        (``path, error``): known-bad tracks, files absent from the archive,
        unreadable MP3 headers, malformed metadata rows.

    Raises:
        ValueError: unknown subset.
        FmaError, ChecksumError, DownloadError, ArchiveError: the dataset
            itself cannot be fetched or read (never for a single bad track).
    """
    subset = check_subset(str(dataset_cfg.subset))
    root = Path(dataset_cfg.root).resolve()
    metadata_dir, audio_dir, audio_zip = fetch(dataset_cfg, subset, root)
    tracks = select_subset(load_tracks(metadata_dir / "tracks.csv"), subset)
    tracks = pd.DataFrame({name: tracks[column] for name, column in TRACK_COLUMNS.items()}).sort_index()
    genres = load_genres(metadata_dir / "genres.csv")
    depths = genre_depths(genres)
    known_bad = {int(t) for t in (dataset_cfg.get("known_bad_tracks") or [])}
    limit = int(dataset_cfg.get("limit") or 0)
    members: set[str] | None = None
    rows, skipped = [], []
    for record in tqdm(tracks.itertuples(), total=len(tracks), desc=f"{dataset_cfg.name} headers", unit="track"):
        if limit and len(rows) >= limit:
            break
        track_id = int(record.Index)
        path = audio_path(audio_dir, track_id)
        if track_id in known_bad:
            skipped.append({"path": str(path), "error": f"{path}: known bad track {track_id} (dataset.known_bad_tracks)"})
            continue
        try:
            if not path.is_file():
                members = members if members is not None else set(zipfile.ZipFile(audio_zip).namelist())
                raise AudioDecodeError(path, _missing_cause(path, audio_zip, members))
            rows.append(_track_row(track_id, record, path, genres, depths, str(dataset_cfg.name)))
        except (AudioError, ValueError) as exc:
            skipped.append({"path": str(path), "error": str(exc)})
    manifest = pd.DataFrame(rows, columns=list(manifest_io.COLUMNS))
    log.info("%s: %d tracks, %d skipped, splits %s", dataset_cfg.name, len(manifest), len(skipped),
             manifest_io.split_counts(manifest))
    return manifest, pd.DataFrame(skipped, columns=list(manifest_io.SKIPPED_COLUMNS))
