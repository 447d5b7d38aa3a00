"""Resumable, verified downloads and safe extraction, against a loopback HTTP server."""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile

import numpy as np
import pytest
import soundfile as sf

from songfeel.datasets import download as dl
from songfeel.datasets.download import ChecksumError, DownloadError, UnsafeArchiveError, download, extract_zip
from songfeel.errors import SongfeelError
from tests.fma_server import FileServer, build_fma_archives

SIZE = 300_000
CHUNK = 16 * 1024


@pytest.fixture
def payload(tmp_path):
    """A 300 kB file of random bytes, served from tmp_path/www: (bytes, sha1)."""
    www = tmp_path / "www"
    www.mkdir()
    data = np.random.default_rng(0).bytes(SIZE)
    (www / "blob.bin").write_bytes(data)
    return data, hashlib.sha1(data).hexdigest()


@pytest.fixture
def server(tmp_path, payload):
    with FileServer(tmp_path / "www") as files:
        yield files


def test_plain_download_is_verified_and_stamped(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "out" / "blob.bin"
    assert download(server.url + "blob.bin", dest, sha1=sha1, chunk_bytes=CHUNK) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("blob.bin.part").exists()
    assert dl.read_stamp(dest) == sha1
    assert server.n_requests == 1 and server.bytes_served == SIZE
    assert server.served[0].range is None


def test_interrupted_download_resumes_with_only_the_missing_bytes(tmp_path, server, payload):
    data, sha1 = payload
    dest, part = tmp_path / "blob.bin", tmp_path / "blob.bin.part"
    server.cut_next_after(100_000)
    with pytest.raises(DownloadError, match="blob.bin"):
        download(server.url + "blob.bin", dest, sha1=sha1, retries=0, chunk_bytes=CHUNK)
    assert not dest.exists()
    assert part.read_bytes() == data[:100_000]  # the partial bytes are kept

    server.reset_counters()
    download(server.url + "blob.bin", dest, sha1=sha1, chunk_bytes=CHUNK)
    assert dest.read_bytes() == data and not part.exists()
    assert [(s.range, s.status) for s in server.served] == [("bytes=100000-", 206)]
    assert server.bytes_served == SIZE - 100_000


def test_a_retry_within_one_call_resumes(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    server.cut_next_after(50_000)
    download(server.url + "blob.bin", dest, sha1=sha1, retries=1, chunk_bytes=CHUNK)
    assert dest.read_bytes() == data
    assert [s.status for s in server.served] == [200, 206]
    assert server.bytes_served == SIZE  # nothing fetched twice


def test_server_ignoring_range_restarts_from_zero(tmp_path, server, payload):
    data, sha1 = payload
    dest, part = tmp_path / "blob.bin", tmp_path / "blob.bin.part"
    part.write_bytes(b"x" * 1000)  # a stale partial download, with wrong bytes
    server.ignore_range = True
    download(server.url + "blob.bin", dest, sha1=sha1, chunk_bytes=CHUNK)
    assert dest.read_bytes() == data  # the 200 body replaced the .part instead of being appended
    assert [(s.range, s.status) for s in server.served] == [("bytes=1000-", 200)]


def test_complete_part_answered_416_is_verified_without_fetching(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(data)
    download(server.url + "blob.bin", dest, sha1=sha1)
    assert dest.read_bytes() == data
    assert [s.status for s in server.served] == [416] and server.bytes_served == 0


def test_checksum_mismatch_deletes_retries_from_scratch_and_raises(tmp_path, server, payload, caplog):
    _, sha1 = payload
    wrong = "0" * 40
    dest = tmp_path / "blob.bin"
    with caplog.at_level(logging.ERROR, logger="songfeel.datasets.download"):
        with pytest.raises(ChecksumError, match="blob.bin") as info:
            download(server.url + "blob.bin", dest, sha1=wrong, retries=1, chunk_bytes=CHUNK)
    assert isinstance(info.value, SongfeelError)
    assert (info.value.path, info.value.expected, info.value.actual) == (str(dest), wrong, sha1)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()
    assert not dl.stamp_path(dest).exists()
    assert [s.range for s in server.served] == [None, None]  # the retry started from scratch
    assert server.bytes_served == 2 * SIZE
    logged = caplog.text
    assert "blob.bin" in logged and wrong in logged and sha1 in logged


def test_rerun_downloads_and_hashes_nothing(tmp_path, server, payload, monkeypatch):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    download(server.url + "blob.bin", dest, sha1=sha1)
    server.reset_counters()

    def no_hashing(*args, **kwargs):
        raise AssertionError("re-hashed an unchanged, stamped file")

    monkeypatch.setattr(dl, "sha1_file", no_hashing)
    assert download(server.url + "blob.bin", dest, sha1=sha1) == dest
    assert server.n_requests == 0


def test_changed_file_is_rehashed_and_fetched_again(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    download(server.url + "blob.bin", dest, sha1=sha1)
    stat = dest.stat()
    dest.write_bytes(b"y" * SIZE)  # same size, new content and mtime: the stamp no longer matches
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    server.reset_counters()
    download(server.url + "blob.bin", dest, sha1=sha1)
    assert dest.read_bytes() == data
    assert server.bytes_served == SIZE


def test_existing_file_without_stamp_is_verified_not_downloaded(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    dest.write_bytes(data)
    download(server.url + "blob.bin", dest, sha1=sha1)
    assert server.n_requests == 0
    assert dl.read_stamp(dest) == sha1


def test_http_404_fails_at_once_naming_the_url(tmp_path, server):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url + "nope.zip", tmp_path / "nope.zip", retries=2)
    assert "nope.zip" in str(info.value) and info.value.url.endswith("/nope.zip")
    assert info.value.status == 404 and server.n_requests == 1  # a 4xx is not retried


def test_http_5xx_is_retried(tmp_path, server, payload):
    data, sha1 = payload
    dest = tmp_path / "blob.bin"
    server.fail_next(503)
    download(server.url + "blob.bin", dest, sha1=sha1, retries=1)
    assert dest.read_bytes() == data
    assert [s.status for s in server.served] == [503, 200]

    server.reset_counters()
    server.fail_next(503)
    with pytest.raises(DownloadError, match="HTTP 503") as info:
        download(server.url + "blob.bin", tmp_path / "again.bin", sha1=sha1, retries=0)
    assert info.value.status == 503 and "again.bin" in str(info.value)
    assert server.n_requests == 1


def test_extract_bzip2_zip_of_fma_layout_and_rerun_is_cheap(tmp_path, monkeypatch):
    build_fma_archives(tmp_path)
    archive = tmp_path / "fma_small.zip"
    with zipfile.ZipFile(archive) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_BZIP2}
    out = tmp_path / "out"
    files = extract_zip(archive, out)
    assert out / "fma_small/000/000002.mp3" in files
    assert len(files) == 7  # README.txt and six .mp3
    info = sf.info(out / "fma_small/000/000002.mp3")
    assert info.format == "MP3" and info.duration == pytest.approx(3.0, abs=0.1)

    truncated = out / "fma_small/000/000003.mp3"
    truncated.write_bytes(truncated.read_bytes()[:100])  # a half-written file is extracted again
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or real_open(self, name, *a, **k))
    assert extract_zip(archive, out) == files
    assert opened == ["fma_small/000/000003.mp3"]
    assert sf.info(truncated).duration == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("member", ["../evil.txt", "fma_small/../../evil.txt", "/tmp/evil.txt"])
def test_extract_refuses_path_traversal(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("fma_small/000/000002.mp3", b"first member")
        zf.writestr(member, b"escaped")
    out = tmp_path / "a" / "b"
    with pytest.raises(UnsafeArchiveError, match="bad.zip") as info:
        extract_zip(archive, out)
    assert info.value.member == member and member in str(info.value)
    assert not out.exists()  # refused before writing anything
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


# --- SHA-256 ---------------------------------------------------------------------------------------


def test_sha256_download_is_verified_and_stamped_apart_from_sha1(tmp_path, server, payload):
    data, sha1 = payload
    sha256 = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "blob.bin"
    assert download(server.url + "blob.bin", dest, sha256=sha256.upper(), chunk_bytes=CHUNK) == dest
    assert dest.read_bytes() == data
    assert dl.read_stamp(dest, "sha256") == sha256 and dl.stamp_path(dest, "sha256").name == "blob.bin.sha256"
    assert not dl.stamp_path(dest).exists()  # no SHA1 was asked for
    assert dl.file_digest(dest, "sha256") == sha256 and dl.file_digest(dest) == sha1

    server.reset_counters()
    assert download(server.url + "blob.bin", dest, sha256=sha256) == dest  # stamped: nothing fetched
    assert server.n_requests == 0


def test_sha256_mismatch_deletes_and_raises(tmp_path, server, payload):
    data, _ = payload
    wrong = "f" * 64
    dest = tmp_path / "blob.bin"
    with pytest.raises(ChecksumError, match="SHA-256 mismatch") as info:
        download(server.url + "blob.bin", dest, sha256=wrong, retries=0)
    assert (info.value.expected, info.value.actual, info.value.algorithm) == (
        wrong, hashlib.sha256(data).hexdigest(), "sha256")
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()
    assert not dl.stamp_path(dest, "sha256").exists()


def test_digest_arguments_are_checked_before_any_request(tmp_path, server, payload):
    data, sha1 = payload
    with pytest.raises(ValueError, match="not both"):
        download(server.url + "blob.bin", tmp_path / "a.bin", sha1=sha1, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ValueError, match="64 hex digits"):
        download(server.url + "blob.bin", tmp_path / "a.bin", sha256=sha1)  # a SHA1 is too short
    with pytest.raises(ValueError, match="unsupported"):
        dl.file_digest(tmp_path, "md5")
    assert server.n_requests == 0 and not (tmp_path / "a.bin").exists()
