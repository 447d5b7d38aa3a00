"""Reference corpora for the human vs AI consistency comparison (SDC, Vendi) of stage 05.

"Structural Derivation" reports that AI-generated music is less consistent
across a song than human-composed music. Stage 05 tests that claim on the
embeddings of every variant: beside the run's own test songs it embeds the
songs of a corpus of the other origin, so that both origins are measured by
the same models in the same run:

* ``ai``: the AI-generated demo tracks of ``immich-memories-music`` (ACE-Step
  1.5, about 30 s each; label ``<mood>/<style>``);
* ``human``: full-length human-composed game soundtracks from Debian packages
  (label: the package, i.e. the soundtrack), at least ``min_seconds`` long.

Songs are decoded and featurised in memory with the run's feature
parameters; :class:`ArrayStore` gives them the read interface of
:class:`songfeel.store.FeatureStore` that the embedding code uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from songfeel.audio import audio_info, load_audio
from songfeel.errors import SongfeelError
from songfeel.features import FeatureConfig, log_mel

log = logging.getLogger(__name__)

#: Origins of a song.
ORIGINS = ("human", "ai")

#: Manifest ``source`` values of AI-generated datasets; every other source is human-composed.
AI_SOURCES = frozenset({"demo"})


def origin_of(source: str) -> str:
    """``"ai"`` for a song of an AI-generated dataset (the demo), else ``"human"``."""
    return "ai" if source in AI_SOURCES else "human"


@dataclass
class ArrayStore:
    """Log-mel frames held in memory, read like :class:`songfeel.store.FeatureStore`.

    Attributes:
        config: the feature parameters the frames were computed with.
        frames: track id -> log-mel array of shape (n_frames, n_mels), in dB.
        labels: track id -> label (e.g. the soundtrack).
        name: the corpus name shown in reports.
        origin: ``"human"`` or ``"ai"``.
        skipped: ``{"path", "error"}`` of every song that could not be used.
    """

    config: FeatureConfig
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""
    origin: str = "human"
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def track_ids(self) -> list[str]:
        return sorted(self.frames)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self.frames

    def n_frames(self, track_id: str) -> int:
        return int(self.frames[track_id].shape[0])

    def logmel(self, track_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        return self.frames[track_id][start:stop]


def featurise(songs: Mapping[str, tuple[str, str]], config: FeatureConfig, name: str, origin: str,
              min_seconds: float = 1.0) -> ArrayStore:
    """Decode and featurise songs into an :class:`ArrayStore`.

    Args:
        songs: track id -> (audio path, label).
        config: feature parameters (sample rate in Hz, n_fft, hop length, n_mels ...).
        name, origin: the corpus name and ``"human"`` or ``"ai"``.
        min_seconds: shortest usable song, seconds.

    Returns:
        the corpus; a song that cannot be decoded (missing, corrupt, too short,
        silent) is logged and listed in ``skipped`` with its path and cause.

    Raises:
        ValueError: ``origin`` is not one of :data:`ORIGINS`.
    """
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
    corpus = ArrayStore(config, name=name, origin=origin)
    for track_id, (path, label) in tqdm(songs.items(), desc=f"featurise {name}", unit="song"):
        try:
            samples = load_audio(path, config.sample_rate, min_seconds=min_seconds)
        except SongfeelError as exc:
            log.warning("%s: skipped %s", name, exc)
            corpus.skipped.append({"path": str(path), "error": str(exc)})
            continue
        corpus.frames[track_id] = log_mel(samples, config)
        corpus.labels[track_id] = label
    return corpus


def ai_demo_songs() -> dict[str, tuple[str, str]]:
    """The AI-generated demo tracks: track id ``demo:<name>`` -> (path, ``<mood>/<style>``).

    Raises:
        FileNotFoundError: ``immich-memories-music`` is not installed.
    """
    from songfeel.datasets import demo

    songs = {}
    for path in sorted(demo.tracks_dir().glob("*/*.opus")):
        labels = demo.parse_labels(path)
        songs[f"demo:{path.stem}"] = (str(path), f"{labels['mood']}/{labels['style']}")
    return songs


def human_soundtrack_songs(packages: Iterable[str], min_seconds: float,
                           max_songs: int | None = None) -> dict[str, tuple[str, str]]:
    """Songs of installed Debian soundtrack packages: ``soundtracks:<package>:<name>`` -> (path, package).

    Packages that are not installed, and files shorter than ``min_seconds`` (jingles), are
    logged and left out; at most ``max_songs`` songs, taken round-robin over the packages.
    """
    from songfeel.datasets import soundtracks

    files, skipped = soundtracks.find_soundtrack_files(list(packages))
    for item in skipped:
        log.info("human reference corpus: skipped %s (%s)", item["path"], item["error"])
    by_package: dict[str, list[tuple[str, str]]] = {}
    for package, path in files:
        try:
            seconds = float(audio_info(path)["duration_seconds"])
        except SongfeelError as exc:
            log.warning("human reference corpus: skipped %s", exc)
            continue
        if seconds >= min_seconds:
            by_package.setdefault(package, []).append((f"soundtracks:{package}:{path.stem}", str(path)))
    songs: dict[str, tuple[str, str]] = {}
    queues = [sorted(v) for _, v in sorted(by_package.items())]
    packages_of = [p for p, _ in sorted(by_package.items())]
    while any(queues) and (max_songs is None or len(songs) < max_songs):
        for package, queue in zip(packages_of, queues):
            if queue and (max_songs is None or len(songs) < max_songs):
                track_id, path = queue.pop(0)
                songs[track_id] = (path, package)
    return songs


def reference_corpus(origin: str, config: FeatureConfig, reference_cfg) -> ArrayStore:
    """The reference corpus of ``origin``, featurised with ``config``.

    Args:
        origin: ``"ai"`` (the demo tracks) or ``"human"`` (Debian soundtracks).
        reference_cfg: ``eval.reference``: ``human_packages``, ``min_seconds`` and ``max_songs``.

    Raises:
        ValueError: unknown origin.
    """
    max_songs = reference_cfg.get("max_songs")
    if origin == "ai":
        songs = ai_demo_songs()
        if max_songs:
            songs = dict(list(songs.items())[: int(max_songs)])
        return featurise(songs, config, "AI demo (immich-memories-music)", "ai")
    if origin == "human":
        songs = human_soundtrack_songs(reference_cfg["human_packages"], float(reference_cfg["min_seconds"]),
                                       max_songs)
        return featurise(songs, config, "human soundtracks (Debian)", "human")
    raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")


__all__ = ["AI_SOURCES", "ORIGINS", "ArrayStore", "ai_demo_songs", "featurise", "human_soundtrack_songs",
           "origin_of", "reference_corpus"]
