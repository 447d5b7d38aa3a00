"""Test helpers: a loopback HTTP file server and a small FMA-shaped dataset.

:class:`FileServer` serves a folder on 127.0.0.1 with HTTP Range support, can
cut the connection mid-body to simulate an interrupted download, and counts
requests and body bytes. :func:`build_fma_archives` writes ``fma_metadata.zip``,
``fma_small.zip`` and ``fma_medium.zip`` laid out like the real FMA archives
(https://github.com/mdeff/fma), with 3 s MP3 excerpts of the real demo tracks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Served:
    """One request the server answered."""

    path: str
    range: str | None
    status: int
    body_bytes: int


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        files: FileServer = self.server.files  # type: ignore[attr-defined]
        target = (files.directory / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
        header = self.headers.get("Range")
        failure = files.take_failure()
        if failure is not None:
            files.record(Served(self.path, header, failure, 0))
            self.send_error(failure)
            return
        if files.directory not in target.parents or not target.is_file():
            files.record(Served(self.path, header, 404, 0))  # recorded before answering: no race with the client
            self.send_error(404)
            return
        data = target.read_bytes()
        size, start, end, status = len(data), 0, len(data) - 1, 200
        match = RANGE.fullmatch(header.strip()) if header and not files.ignore_range else None
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            if start >= size:
                files.record(Served(self.path, header, 416, 0))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "none" if files.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        cut = files.take_cut()
        sent = body if cut is None else body[:cut]
        files.record(Served(self.path, header, status, len(sent)))
        self.wfile.write(sent)
        self.wfile.flush()
        self.close_connection = True


class FileServer:
    """Serve ``directory`` over HTTP on 127.0.0.1 (an OS-chosen port), in a daemon thread.

    Attributes:
        url: base address, ending with '/'.
        ignore_range: answer every request 200 with the whole file, as a
            server without Range support does.
        served: every request answered, in order.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).resolve()
        self.ignore_range = False
        self.served: list[Served] = []
        self._cut: int | None = None
        self._failure: int | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.files = self  # type: ignore[attr-defined]
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def cut_next_after(self, n_bytes: int) -> None:
        """Close the connection after ``n_bytes`` of body on the next GET (headers announce the full length)."""
        with self._lock:
            self._cut = n_bytes

    def fail_next(self, status: int) -> None:
        """Answer the next GET with the error ``status`` (e.g. 503)."""
        with self._lock:
            self._failure = status

    def take_failure(self) -> int | None:
        with self._lock:
            failure, self._failure = self._failure, None
            return failure

    def take_cut(self) -> int | None:
        with self._lock:
            cut, self._cut = self._cut, None
            return cut

    def record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    @property
    def n_requests(self) -> int:
        return len(self.served)

    @property
    def bytes_served(self) -> int:
        """Body bytes sent so far, over all requests."""
        return sum(s.body_bytes for s in self.served)

    def reset_counters(self) -> None:
        with self._lock:
            self.served.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sha1_of(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


# --- a small FMA-shaped dataset -------------------------------------------

#: genres.csv rows: genre_id -> (parent, title). Depths: Rock 0 > Punk 1 > Oi 2 (Oi has the smallest id).
GENRES = {
    1: (38, "Avant-Garde"),
    12: (0, "Rock"),
    15: (0, "Electronic"),
    17: (0, "Folk"),
    21: (0, "Hip-Hop"),
    25: (12, "Punk"),
    38: (0, "Experimental"),
    4: (25, "Oi"),
    236: (15, "Ambient Electronic"),
}

KNOWN_BAD = 98565  # in the archives with valid audio, listed in known_bad_tracks
CORRUPT = 1482  # an .mp3 member whose bytes are not audio
MISSING = 2001  # in tracks.csv, absent from the audio archives
MEDIUM_ONLY = 10250  # subset 'medium': only in fma_medium.zip
LARGE_ONLY = 20300  # subset 'large': in no archive built here

#: tracks.csv rows: id -> (subset, split, genre_top, genres_all, artist id, album id).
TRACKS = {
    2: ("small", "training", "Hip-Hop", "[21]", 1, 1),
    3: ("small", "validation", "Rock", "[25, 4, 12]", 2, 4),
    5: ("small", "test", "Electronic", "[236, 15]", 3, 6),
    134: ("small", "training", None, "[1, 38, 21]", 4, None),
    CORRUPT: ("small", "training", "Folk", "[17]", 5, 9),
    MISSING: ("small", "test", "Rock", "[12]", 6, 10),
    MEDIUM_ONLY: ("medium", "validation", "Folk", "[17]", 7, 11),
    LARGE_ONLY: ("large", "training", "Experimental", "[38]", 8, 12),
    KNOWN_BAD: ("small", "training", "Electronic", "[15]", 9, 13),
}

#: Audio of each track with a valid MP3: (sample rate in Hz, channels).
AUDIO = {2: (48000, 2), 3: (48000, 1), 5: (44100, 2), 134: (48000, 1), MEDIUM_ONLY: (44100, 1), KNOWN_BAD: (48000, 2)}
CLIP_SECONDS = 3.0


def demo_tracks() -> list[Path]:
    """The real .opus demo tracks of the installed package immich_memories_music."""
    spec = importlib.util.find_spec("immich_memories_music")
    assert spec is not None and spec.submodule_search_locations, "immich_memories_music is not installed"
    return sorted((Path(next(iter(spec.submodule_search_locations))) / "tracks").glob("*/*.opus"))


def write_mp3_clip(source: Path, target: Path, sample_rate: int, channels: int) -> None:
    """Write a ``CLIP_SECONDS`` excerpt of ``source`` (from 5 s in) as MP3 at ``sample_rate`` with ``channels``."""
    info = sf.info(source)
    data, rate = sf.read(source, start=5 * info.samplerate, frames=int(CLIP_SECONDS * info.samplerate),
                         dtype="float32", always_2d=True)
    if channels == 1:
        data = data.mean(axis=1, keepdims=True)
    if rate != sample_rate:
        data = soxr.resample(data, rate, sample_rate).astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, data, sample_rate, format="MP3", compression_level=0.9)


def tracks_frame() -> pd.DataFrame:
    """tracks.csv content with FMA's two-level columns (a subset of the real ones)."""
    columns = pd.MultiIndex.from_tuples([
        ("album", "id"), ("album", "title"), ("artist", "id"), ("artist", "name"), ("set", "split"),
        ("set", "subset"), ("track", "duration"), ("track", "genre_top"), ("track", "genres"),
        ("track", "genres_all"), ("track", "title"),
    ])
    rows = []
    for track_id, (subset, split, top, genres_all, artist, album) in TRACKS.items():
        rows.append([album, f"Album {album}" if album else None, artist, f"Artist {artist}", split, subset, 30,
                     top, genres_all, genres_all, f"Track {track_id}"])
    frame = pd.DataFrame(rows, index=pd.Index(list(TRACKS), name="track_id"), columns=columns)
    frame[("album", "id")] = frame[("album", "id")].astype("Int64")
    return frame


def genres_frame() -> pd.DataFrame:
    """genres.csv content: genre_id,#tracks,parent,title,top_level."""
    def top(genre: int) -> int:
        return genre if GENRES[genre][0] == 0 else top(GENRES[genre][0])

    rows = [{"genre_id": g, "#tracks": 1, "parent": p, "title": t, "top_level": top(g)} for g, (p, t) in GENRES.items()]
    return pd.DataFrame(rows).set_index("genre_id")


def build_fma_archives(directory: str | Path) -> dict[str, str]:
    """Write fma_metadata.zip, fma_small.zip and fma_medium.zip into ``directory``.

    The audio archives are ZIP_BZIP2, like FMA's, and hold ``fma_<subset>/NNN/NNNNNN.mp3``
    plus a README.txt. Small holds every 'small' track with audio (incl. the
    known-bad one and the corrupt one); medium adds the medium-only track.

    Returns:
        archive name -> SHA1 (hex).
    """
    directory = Path(directory)
    staging = directory / "staging"
    sources = demo_tracks()
    for n, (track_id, (rate, channels)) in enumerate(AUDIO.items()):
        write_mp3_clip(sources[n * 5 % len(sources)], staging / f"{track_id:06d}.mp3", rate, channels)
    (staging / f"{CORRUPT:06d}.mp3").write_bytes(b"this is not an MPEG audio stream\n" * 40)

    with zipfile.ZipFile(directory / "fma_metadata.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fma_metadata/tracks.csv", tracks_frame().to_csv())
        zf.writestr("fma_metadata/genres.csv", genres_frame().to_csv())
    for subset in ("small", "medium"):
        with zipfile.ZipFile(directory / f"fma_{subset}.zip", "w", zipfile.ZIP_BZIP2) as zf:
            zf.writestr(f"fma_{subset}/README.txt", f"FMA-shaped test archive, subset {subset}\n")
            for clip in sorted(staging.glob("*.mp3")):
                track_id = int(clip.stem)
                if subset == "small" and TRACKS[track_id][0] != "small":
                    continue
                zf.write(clip, f"fma_{subset}/{clip.stem[:3]}/{clip.name}")
    for clip in staging.iterdir():
        clip.unlink()
    staging.rmdir()
    return {name: sha1_of(directory / name) for name in ("fma_metadata.zip", "fma_small.zip", "fma_medium.zip")}
