"""Snippets (clips) of the manifest's songs, rendered once into a cache folder.

Every song gets one clip: ``snippet_seconds`` taken from the song's body
(centred at ``snippet_centre`` of its duration, never starting in the first
``skip_intro_seconds``), decoded with :func:`songfeel.audio.load_audio`, mono,
written as 16-bit FLAC at ``sample_rate`` Hz to ``<cache>/<clip_id>.flac``.

A clip is known to listeners only by its ``clip_id``: 16 hex digits of a SHA-1
over the track id, the source file (path, size, mtime) and the snippet window,
so it says nothing about the song and changes whenever the audio or window does.
The audio route looks ids up in :class:`ClipLibrary`; it never builds a path
from what a client sends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from songfeel.audio import load_audio
from songfeel.errors import AudioError

log = logging.getLogger(__name__)

#: What a clip id looks like; anything else is rejected before any lookup.
CLIP_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")

#: Bumped when the rendering changes, so that old cached files are not reused.
RENDER_VERSION = 1

#: Shortest decoded song accepted, in seconds.
MIN_SONG_SECONDS = 1.0


@dataclass(frozen=True)
class Clip:
    """One rendered snippet.

    Attributes:
        clip_id: 16 hex digits, the only name clients see.
        track_id: the manifest's track id.
        path: the rendered FLAC file in the cache.
        start_s, end_s: the snippet's window in the song, seconds.
    """

    clip_id: str
    track_id: str
    path: Path
    start_s: float
    end_s: float


@dataclass
class ClipLibrary:
    """The clips that can be served, by clip id and by track id, plus the songs skipped and why."""

    clips: dict[str, Clip] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_track = {clip.track_id: clip for clip in self.clips.values()}

    def get(self, clip_id: str) -> Clip | None:
        """The clip with this id, or None (also for ids that are not 16 hex digits)."""
        if not isinstance(clip_id, str) or not CLIP_ID_PATTERN.match(clip_id):
            return None
        return self.clips.get(clip_id)

    def for_track(self, track_id: str) -> Clip | None:
        """The clip of a track, or None when the track was skipped or is unknown."""
        return self._by_track.get(track_id)

    @property
    def track_ids(self) -> list[str]:
        """Track ids that have a clip, sorted."""
        return sorted(self._by_track)

    def __len__(self) -> int:
        return len(self.clips)


def snippet_bounds(duration_s: float, snippet_s: float, centre: float = 0.4,
                   skip_intro_s: float = 5.0) -> tuple[float, float]:
    """The window of a song's snippet, in seconds.

    The window is ``snippet_s`` long and centred at ``centre * duration_s``,
    shifted to start no earlier than ``skip_intro_s`` and to end by the end of
    the song. A song shorter than ``snippet_s`` gives its whole length; one
    shorter than ``skip_intro_s + snippet_s`` gives its last ``snippet_s``.

    Args:
        duration_s: the song's duration, seconds (> 0).
        snippet_s: the snippet's length, seconds (> 0).
        centre: where the window is centred, a fraction of the duration in (0, 1).
        skip_intro_s: earliest start, seconds (>= 0).

    Returns:
        ``(start_s, end_s)``, with ``0 <= start_s < end_s <= duration_s``.

    Raises:
        ValueError: a duration or length is not positive, or ``centre`` is outside (0, 1).
    """
    if not duration_s > 0 or not snippet_s > 0:
        raise ValueError(f"duration and snippet length must be positive, got {duration_s} s and {snippet_s} s")
    if not 0.0 < centre < 1.0:
        raise ValueError(f"centre must lie in (0, 1), got {centre}")
    if duration_s <= snippet_s:
        return 0.0, float(duration_s)
    latest = duration_s - snippet_s
    start = centre * duration_s - snippet_s / 2.0
    start = max(start, min(skip_intro_s, latest))
    start = min(max(start, 0.0), latest)
    return float(start), float(start + snippet_s)


def clip_id_for(track_id: str, source: Path, start_s: float, end_s: float, sample_rate: int) -> str:
    """The id of a track's clip: 16 hex digits of a SHA-1 over the track, its file and the window.

    Raises:
        OSError: the source file cannot be stat'ed.
    """
    stat = Path(source).stat()
    key = "\0".join([str(RENDER_VERSION), track_id, str(Path(source).resolve()), str(stat.st_size),
                     str(stat.st_mtime_ns), f"{start_s:.3f}", f"{end_s:.3f}", str(sample_rate)])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def render_clip(source: Path, destination: Path, start_s: float, end_s: float, sample_rate: int) -> Path:
    """Decode ``source`` and write its ``[start_s, end_s)`` window to ``destination`` as mono FLAC.

    The window is moved back (never shortened) when the decoded audio ends
    before ``end_s``. The file is written to a temporary name and renamed, so a
    crash never leaves a partial clip under ``destination``.

    Args:
        source: the song's audio file.
        destination: the FLAC file to write.
        start_s, end_s: the window, seconds.
        sample_rate: sample rate of the clip, Hz.

    Returns:
        ``destination``.

    Raises:
        AudioError: the song cannot be decoded, is silent or shorter than 1 s (names the file).
    """
    audio = load_audio(source, sample_rate, min_seconds=MIN_SONG_SECONDS)
    length = max(1, int(round((end_s - start_s) * sample_rate)))
    start = min(int(round(start_s * sample_rate)), max(0, audio.shape[0] - length))
    snippet = np.clip(audio[start : start + length], -1.0, 1.0)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    sf.write(partial, snippet, sample_rate, format="FLAC", subtype="PCM_16")
    os.replace(partial, destination)
    return destination


def build_library(manifest: pd.DataFrame, cache_dir: str | Path, snippet_seconds: float, centre: float = 0.4,
                  skip_intro_seconds: float = 5.0, sample_rate: int = 22050) -> ClipLibrary:
    """Render (or reuse from ``cache_dir``) one clip per manifest song.

    A song that cannot be decoded is skipped, with a warning naming the file
    and the cause; the library holds the rest.

    Args:
        manifest: rows of stage 01's manifest (needs ``track_id``, ``path``, ``duration_seconds``).
        cache_dir: folder of rendered clips.
        snippet_seconds, centre, skip_intro_seconds: see :func:`snippet_bounds`.
        sample_rate: sample rate of the clips, Hz.

    Returns:
        the library; ``skipped`` lists ``track_id, path, error`` of the songs left out.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    clips: dict[str, Clip] = {}
    skipped: list[dict[str, str]] = []
    rendered = reused = 0
    for row in manifest.itertuples(index=False):
        source = Path(str(row.path))
        try:
            duration = float(row.duration_seconds)
            if not np.isfinite(duration) or duration <= 0:
                raise AudioError(source, f"manifest duration {row.duration_seconds!r} is not a positive number")
            start, end = snippet_bounds(duration, snippet_seconds, centre, skip_intro_seconds)
            try:
                clip_id = clip_id_for(row.track_id, source, start, end, sample_rate)
            except OSError as exc:
                raise AudioError(source, f"cannot read the file: {exc.strerror or exc}") from exc
            target = cache_dir / f"{clip_id}.flac"
            if target.is_file() and target.stat().st_size > 0:
                reused += 1
            else:
                render_clip(source, target, start, end, sample_rate)
                rendered += 1
        except AudioError as exc:
            log.warning("skipping %s (%s): %s", row.track_id, exc.path, exc.cause)
            skipped.append({"track_id": str(row.track_id), "path": str(source), "error": exc.cause})
            continue
        clips[clip_id] = Clip(clip_id, str(row.track_id), target, start, end)
    log.info("clips ready in %s: %d rendered, %d reused, %d songs skipped", cache_dir, rendered, reused, len(skipped))
    return ClipLibrary(clips, skipped)


__all__ = [
    "CLIP_ID_PATTERN",
    "Clip",
    "ClipLibrary",
    "build_library",
    "clip_id_for",
    "render_clip",
    "snippet_bounds",
]
