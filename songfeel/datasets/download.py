"""Resumable HTTP downloads, SHA1 / SHA-256 verification and safe zip extraction.

Generic building blocks for sources that fetch public files (e.g. FMA's
archives, https://github.com/mdeff/fma, verified by SHA1; MECOMP's ONNX model,
verified by SHA-256). A download streams into ``<dest>.part``, resumes it with
an HTTP ``Range`` request after an interruption, is verified against a
published digest and only then renamed to ``dest``. A stamp file
``<dest>.<algorithm>`` (``.sha1`` or ``.sha256``) records the verified digest
with the file's size and mtime, so a rerun neither downloads nor re-hashes a
file that is already there and unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import requests
from tqdm.auto import tqdm

from songfeel.errors import SongfeelError
from songfeel.hashing import sha1_file

log = logging.getLogger(__name__)

#: requests exceptions after which a download is retried (resuming the .part).
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

#: Supported digest algorithms (hashlib names) -> the name used in messages, and the hex length of a digest.
DIGEST_NAMES = {"sha1": "SHA1", "sha256": "SHA-256"}
DIGEST_HEX_LENGTHS = {"sha1": 40, "sha256": 64}


class DownloadError(SongfeelError):
    """A file could not be downloaded (HTTP error, or interrupted too often).

    Attributes:
        url: the address asked for.
        path: the destination file.
        cause: a short, human-readable reason.
        status: the HTTP status code, or None when no error status was received.
    """

    def __init__(self, url: str, path: str | Path, cause: str, status: int | None = None) -> None:
        self.url = url
        self.path = str(path)
        self.cause = cause
        self.status = status
        super().__init__(f"{self.path}: download of {url} failed: {cause}")


class IncompleteDownloadError(DownloadError):
    """The server sent fewer bytes than it announced; the .part is kept to resume."""


class ChecksumError(SongfeelError):
    """A downloaded file's digest (SHA1 or SHA-256) differs from the published one.

    Attributes:
        path: the file that failed verification (it has been deleted).
        expected: the published digest (hex).
        actual: the digest of the bytes received (hex).
        algorithm: ``'sha1'`` or ``'sha256'``.
    """

    def __init__(self, path: str | Path, expected: str, actual: str, algorithm: str = "sha1") -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        self.algorithm = algorithm
        name = DIGEST_NAMES.get(algorithm, algorithm)
        super().__init__(f"{self.path}: {name} mismatch, expected {expected}, got {actual}; the file was deleted")


class ArchiveError(SongfeelError):
    """A zip archive cannot be read.

    Attributes:
        archive: the zip file.
        member: the member at fault ('' for the whole archive).
        cause: a short, human-readable reason.
    """

    def __init__(self, archive: str | Path, member: str, cause: str) -> None:
        self.archive = str(archive)
        self.member = member
        self.cause = cause
        where = f"{self.archive}: member {member!r}" if member else self.archive
        super().__init__(f"{where}: {cause}")


class UnsafeArchiveError(ArchiveError):
    """A zip member would be written outside the target folder (absolute path or '..')."""


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in DIGEST_NAMES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}; use one of {sorted(DIGEST_NAMES)}")
    return algorithm


def file_digest(path: str | Path, algorithm: str = "sha1", chunk_bytes: int = 1 << 20) -> str:
    """Hex digest (lowercase) of a file's bytes, with a progress bar.

    Args:
        path: the file.
        algorithm: ``'sha1'`` (40 hex digits) or ``'sha256'`` (64 hex digits).
        chunk_bytes: read block size, in bytes.

    Raises:
        ValueError: unsupported ``algorithm``.
        OSError: the file cannot be read.
    """
    if _check_algorithm(algorithm) == "sha1":
        return sha1_file(path, chunk_bytes)  # looked up at call time, so tests can count the hashing
    path = Path(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                      desc=f"{algorithm} {path.name}", leave=False) as bar:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def stamp_path(dest: str | Path, algorithm: str = "sha1") -> Path:
    """The stamp file of ``dest``: ``<dest>.sha1`` (or ``<dest>.sha256`` for ``algorithm='sha256'``)."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.{_check_algorithm(algorithm)}")


def write_stamp(dest: str | Path, digest: str, algorithm: str = "sha1") -> None:
    """Record ``digest`` (hex, of ``algorithm``) with the current size (bytes) and mtime (ns) of ``dest``."""
    stat = Path(dest).stat()
    record = {algorithm: digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp_path(dest, algorithm).write_text(json.dumps(record) + "\n")


def read_stamp(dest: str | Path, algorithm: str = "sha1") -> str | None:
    """The digest (``algorithm``) recorded for ``dest`` if its stamp matches its size and mtime, else None."""
    dest, stamp = Path(dest), stamp_path(dest, algorithm)
    if not dest.is_file() or not stamp.is_file():
        return None
    try:
        record = json.loads(stamp.read_text())
        stat = dest.stat()
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return str(record[algorithm])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("%s: unreadable stamp (%s), ignoring it", stamp, exc)
    return None


def _verified_existing(dest: Path, expected: str | None, algorithm: str) -> bool:
    """Whether ``dest`` already holds the expected bytes; hashes it only without a valid stamp."""
    if not dest.is_file():
        return False
    name = DIGEST_NAMES[algorithm]
    recorded = read_stamp(dest, algorithm)
    if recorded is not None and (expected is None or recorded == expected):
        log.info("%s: already downloaded and verified (stamp %s), skipping", dest, stamp_path(dest, algorithm).name)
        return True
    actual = file_digest(dest, algorithm)
    if expected is None or actual == expected:
        write_stamp(dest, actual, algorithm)
        log.info("%s: already present, %s %s verified, skipping the download", dest, name, actual)
        return True
    log.error("%s: existing file has %s %s, expected %s; deleting it and downloading again", dest, name, actual,
              expected)
    dest.unlink()
    stamp_path(dest, algorithm).unlink(missing_ok=True)
    return False


def _expected_digest(sha1: str | None, sha256: str | None) -> tuple[str, str | None]:
    """The algorithm to verify with and the expected digest (lowercase), from ``download``'s arguments.

    Raises:
        ValueError: both are given, or a digest is not hex of the algorithm's length.
    """
    if sha1 and sha256:
        raise ValueError("give sha1 or sha256, not both")
    algorithm, expected = ("sha256", sha256) if sha256 else ("sha1", sha1)
    if not expected:
        return algorithm, None
    expected = expected.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{DIGEST_HEX_LENGTHS[algorithm]}}}", expected):
        raise ValueError(f"{DIGEST_NAMES[algorithm]} must be {DIGEST_HEX_LENGTHS[algorithm]} hex digits, "
                         f"got {expected!r}")
    return algorithm, expected


def _expected_total(response: requests.Response, offset: int) -> int | None:
    """Full size of the remote file in bytes, from Content-Range or Content-Length."""
    match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match and match.group(3) != "*":
        return int(match.group(3))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _fetch(url: str, dest: Path, part: Path, chunk_bytes: int, timeout: float) -> None:
    """One HTTP attempt: append the missing bytes of ``url`` to ``part`` (the .part of ``dest``).

    Raises:
        DownloadError: HTTP error status.
        IncompleteDownloadError: fewer bytes than announced arrived.
        requests.RequestException: connection failure or broken stream.
    """
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and offset:
            log.info("%s: server reports the %d bytes already held are complete", part, offset)
            return
        if response.status_code >= 400:
            raise DownloadError(url, dest, f"HTTP {response.status_code} {response.reason}", response.status_code)
        if offset and response.status_code == 200:
            log.warning("%s: server ignored the Range request, restarting from byte 0", part)
            offset = 0
        elif offset and response.status_code == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise IncompleteDownloadError(url, dest, f"server answered Range bytes={offset}- with "
                                              f"Content-Range {response.headers.get('Content-Range')!r}; restarting")
            log.info("%s: resuming at byte %d", part, offset)
        total = _expected_total(response, offset)
        # Hand over a truncated body's last bytes instead of dropping them with an
        # IncompleteRead: the size check below catches the truncation, and the
        # resume then asks for exactly the missing bytes.
        response.raw.enforce_content_length = False
        with open(part, "ab" if offset else "wb") as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                                desc=part.name.removesuffix(".part")) as bar:
            for chunk in response.iter_content(chunk_bytes):
                fh.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise IncompleteDownloadError(url, dest, f"received {size} of {total} bytes")


def download(
    url: str,
    dest: str | Path,
    sha1: str | None = None,
    retries: int = 2,
    chunk_bytes: int = 1 << 20,
    timeout: float = 60.0,
    *,
    sha256: str | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming, verifying and skipping what is already there.

    Bytes stream into ``<dest>.part``. An existing .part is resumed with
    ``Range: bytes=<size>-``: 206 appends, 200 (Range ignored) restarts from
    zero, 416 means the .part is already complete. A broken connection or a
    truncated body keeps the .part and retries, resuming. The finished file's
    SHA1 (or SHA-256) is checked against ``sha1`` (``sha256``); on mismatch it
    is deleted and fetched again from scratch. Only a verified file is renamed
    to ``dest``, and the stamp ``<dest>.sha1`` (``<dest>.sha256``: digest,
    size, mtime) is written. If ``dest`` exists and its stamp matches, nothing
    is downloaded or hashed; an existing ``dest`` with another digest is
    deleted and downloaded again.

    Args:
        url: http(s) address of the file.
        dest: the file to write.
        sha1: expected SHA1, 40 hex digits (None: no SHA1 verification).
        retries: further attempts after the first one fails.
        chunk_bytes: read/write block size, in bytes.
        timeout: seconds to wait for the connection and for each read.
        sha256: expected SHA-256, 64 hex digits, instead of ``sha1`` (keyword only).

    Returns:
        ``dest``, verified.

    Raises:
        ValueError: both ``sha1`` and ``sha256`` are given, or a digest is malformed.
        ChecksumError: the digest still differs after ``retries`` retries.
        DownloadError: an HTTP error status (4xx at once, 5xx after the
            retries), or the connection kept breaking.
    """
    dest, retries = Path(dest), max(0, int(retries))
    algorithm, expected = _expected_digest(sha1, sha256)
    name = DIGEST_NAMES[algorithm]
    if _verified_existing(dest, expected, algorithm):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failure: SongfeelError | None = None
    for attempt in range(1, retries + 2):
        try:
            _fetch(url, dest, part, chunk_bytes, timeout)
        except (*TRANSIENT_ERRORS, IncompleteDownloadError) as exc:
            failure = exc if isinstance(exc, DownloadError) else DownloadError(url, dest, f"{type(exc).__name__}: {exc}")
            log.warning("%s: attempt %d/%d interrupted (%s); keeping %s to resume", dest, attempt, retries + 1,
                        failure.cause, part.name)
            continue
        except DownloadError as exc:
            if exc.status is None or exc.status < 500:
                raise
            failure = exc
            log.warning("%s: attempt %d/%d failed (%s)", dest, attempt, retries + 1, exc.cause)
            continue
        actual = file_digest(part, algorithm, chunk_bytes)
        if expected is not None and actual != expected:
            failure = ChecksumError(dest, expected, actual, algorithm)
            part.unlink()
            log.error("%s: %s mismatch on attempt %d/%d: expected %s, got %s; deleted the download", dest, name,
                      attempt, retries + 1, expected, actual)
            continue
        part.replace(dest)
        write_stamp(dest, actual, algorithm)
        log.info("%s: downloaded and verified (%s %s)", dest, name, actual)
        return dest
    assert failure is not None
    raise failure


def _check_member(zip_path: Path, name: str) -> None:
    """Raise UnsafeArchiveError if member ``name`` would land outside the target folder."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(zip_path, name, "absolute path or '..' component; refusing to extract the archive")


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Write one member through a temporary file, so a half-written file never looks complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".extracting")
    with archive.open(info) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.replace(target)


def extract_zip(zip_path: str | Path, dest_dir: str | Path) -> list[Path]:
    """Extract a (verified) zip archive into ``dest_dir``; cheap to rerun.

    Uses :mod:`zipfile`, which reads FMA's bzip2-compressed members
    (``ZIP_BZIP2``). A member already on disk with the right size is not
    extracted again. Every member name is checked before anything is written.
    A member that fails to decompress (bad CRC, truncated data) is logged and
    left out; the others are still extracted. Call it only on an archive whose
    checksum was verified (see :func:`download`).

    Args:
        zip_path: the archive.
        dest_dir: the folder to extract into (created if needed).

    Returns:
        the paths of the files (not folders) on disk, in archive order.

    Raises:
        UnsafeArchiveError: a member path is absolute or contains '..'.
        ArchiveError: the file is not a readable zip archive.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(zip_path, "", f"not a readable zip archive: {exc}") from exc
    files, reused = [], 0
    with archive:
        members = archive.infolist()
        for info in members:
            _check_member(zip_path, info.filename)
        for info in tqdm(members, desc=f"extract {zip_path.name}", unit="file"):
            target = dest_dir / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if target.is_file() and target.stat().st_size == info.file_size:
                reused += 1
                files.append(target)
                continue
            try:
                _extract_member(archive, info, target)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                target.with_name(target.name + ".extracting").unlink(missing_ok=True)
                log.error("%s: member %r cannot be extracted: %s", zip_path, info.filename, exc)
                continue
            files.append(target)
    log.info("%s: %d files in %s (%d already there)", zip_path, len(files), dest_dir, reused)
    return files


__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "IncompleteDownloadError",
    "UnsafeArchiveError",
    "download",
    "extract_zip",
    "file_digest",
    "read_stamp",
    "sha1_file",
    "stamp_path",
    "write_stamp",
]
