"""The survey's settings: one frozen dataclass, filled by the command line or by tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Allowed snippet lengths, in seconds (the issue asks for 10-20 s).
MIN_SNIPPET_SECONDS = 10.0
MAX_SNIPPET_SECONDS = 20.0

#: Default manifest of stage 01; when it is absent the demo manifest is built in memory.
DEFAULT_MANIFEST = Path("data/manifest.csv")


@dataclass(frozen=True)
class Settings:
    """Everything the survey app needs to start.

    Attributes:
        database_url: SQLAlchemy URL; ``sqlite:///path`` (file, WAL mode) or
            ``postgresql://user:pass@host:port/db`` (psycopg 3).
        admin_token: bearer token of the export and stats endpoints; must not be empty.
        manifest_path: manifest CSV of stage 01; None uses ``data/manifest.csv`` when it
            exists, else the demo manifest built in memory.
        clip_cache: folder of rendered snippets (FLAC, mono, ``sample_rate`` Hz).
        snippet_seconds: snippet length, 10-20 s.
        snippet_centre: where the snippet is centred, as a fraction of the song's duration.
        skip_intro_seconds: a snippet never starts before this (unless the song is too short).
        sample_rate: sample rate of the rendered snippets, Hz.
        questions_per_session: questions per listener, repeats included.
        repeat_fraction: share of questions that repeat an earlier one to the same listener.
        repeat_min_gap: a repeat comes at least this many questions after its original.
        overlap_fraction: share of new questions taken from other listeners' questions
            (for inter-listener agreement) while they have fewer than ``overlap_target`` answers.
        overlap_target: answers wanted per shared question.
        same_split: the three songs of a question come from one split of the manifest
            (stage 03 drops questions that cross splits).
        min_repeats: repeats needed before a listener can be flagged.
        reliability_threshold: a listener whose repeat answers agree less often than this is flagged.
        embeddings_path: per-song embeddings (CSV ``track_id,e0,e1,...`` or NPZ with
            ``track_ids`` and ``embeddings``) for the uncertainty mode; None turns it off.
        uncertainty_pool: companions considered per question in the uncertainty mode.
        rate_per_second: per-listener long-run rate, requests per second.
        rate_burst: requests a listener may send at once (a moving window of ``rate_burst /
            rate_per_second`` seconds; :mod:`songfeel.annotate.ratelimit`).
        rate_limit_storage: where the rate limiter counts, a ``limits`` storage URI:
            ``memory://`` (one per process) or e.g. ``redis://host:6379`` shared by every worker.
        max_body_bytes: largest request body accepted, bytes.
        seed: seed of every random choice.
        title: the survey's title, shown on its pages.
    """

    database_url: str = "sqlite:///data/survey.sqlite"
    admin_token: str = ""
    manifest_path: Path | None = None
    clip_cache: Path = Path("data/survey_clips")
    snippet_seconds: float = 15.0
    snippet_centre: float = 0.4
    skip_intro_seconds: float = 5.0
    sample_rate: int = 22050
    questions_per_session: int = 20
    repeat_fraction: float = 0.1
    repeat_min_gap: int = 3
    overlap_fraction: float = 0.2
    overlap_target: int = 3
    same_split: bool = True
    min_repeats: int = 2
    reliability_threshold: float = 0.5
    embeddings_path: Path | None = None
    uncertainty_pool: int = 12
    rate_per_second: float = 1.0
    rate_burst: int = 30
    rate_limit_storage: str = "memory://"
    max_body_bytes: int = 16384
    seed: int = 0
    title: str = "Which song is the odd one out?"

    def __post_init__(self) -> None:
        problems = []
        if not self.admin_token:
            problems.append("admin_token must not be empty")
        if not MIN_SNIPPET_SECONDS <= self.snippet_seconds <= MAX_SNIPPET_SECONDS:
            problems.append(f"snippet_seconds must lie in [{MIN_SNIPPET_SECONDS:g}, {MAX_SNIPPET_SECONDS:g}] s, "
                            f"got {self.snippet_seconds}")
        if not 0.0 < self.snippet_centre < 1.0:
            problems.append(f"snippet_centre must lie in (0, 1), got {self.snippet_centre}")
        if self.skip_intro_seconds < 0:
            problems.append(f"skip_intro_seconds must be >= 0, got {self.skip_intro_seconds}")
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive (Hz), got {self.sample_rate}")
        if self.questions_per_session < 1:
            problems.append(f"questions_per_session must be >= 1, got {self.questions_per_session}")
        for name in ("repeat_fraction", "overlap_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.repeat_min_gap < 1 or self.overlap_target < 2 or self.min_repeats < 1:
            problems.append("repeat_min_gap and min_repeats must be >= 1 and overlap_target >= 2")
        if not 0.0 <= self.reliability_threshold <= 1.0:
            problems.append(f"reliability_threshold must lie in [0, 1], got {self.reliability_threshold}")
        if self.uncertainty_pool < 2:
            problems.append(f"uncertainty_pool must be >= 2, got {self.uncertainty_pool}")
        if self.rate_per_second <= 0 or self.rate_burst < 1:
            problems.append("rate_per_second must be > 0 and rate_burst >= 1")
        if self.max_body_bytes < 256:
            problems.append(f"max_body_bytes must be >= 256, got {self.max_body_bytes}")
        if problems:
            raise ValueError("invalid survey settings: " + "; ".join(problems))
        if len(self.admin_token) < 16 or self.admin_token == "change-me":
            log.warning("the admin token is short or the default: set a long random one before deploying")


__all__ = ["DEFAULT_MANIFEST", "MAX_SNIPPET_SECONDS", "MIN_SNIPPET_SECONDS", "Settings"]
