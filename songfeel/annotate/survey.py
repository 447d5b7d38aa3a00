"""The survey's logic, independent of HTTP: listeners, questions, answers, export and statistics.

:class:`Survey` holds the manifest, the clip library, the database and the
rate limiter. Its methods raise :class:`SurveyError` subclasses, each carrying
the HTTP status the app answers with. Every write happens in one transaction
that is committed before the method returns, so an answer is on disk before
the listener hears back.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from songfeel import manifest as manifest_io
from songfeel.annotate import selection
from songfeel.annotate.clips import ClipLibrary, build_library
from songfeel.annotate.db import (
    Annotator,
    Answer,
    Question,
    Song,
    Triplet,
    add_if_absent,
    create_survey_engine,
    migrate,
    question_id,
    session_factories,
)
from songfeel.annotate.ratelimit import ListenerRateLimiter
from songfeel.annotate.settings import DEFAULT_MANIFEST, Settings
from songfeel.annotate.stats import survey_stats

log = logging.getLogger(__name__)

#: Columns of the export: songfeel's human odd-one-out format (:func:`songfeel.triplets.read_human_answers`).
EXPORT_COLUMNS = ("song1", "song2", "song3", "odd_one_out", "annotator")

#: Labels shown on the thank-you page, when the manifest has them.
SHOWN_LABELS = ("artist", "album", "genre", "mood", "style")

#: Attempts at a transaction that lost a race (unique constraint) or a lock (SQLite busy).
ATTEMPTS = 5

_DEMO_DATASET = {"name": "demo", "label_columns": ["mood", "style"], "val_fraction": 0.15, "test_fraction": 0.2,
                 "seed": 0, "limit": None}


class SurveyError(Exception):
    """A request the survey refuses; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SurveyError):
    status = 404


class Forbidden(SurveyError):
    status = 403


class Conflict(SurveyError):
    status = 409


class Invalid(SurveyError):
    status = 422


class Unavailable(SurveyError):
    status = 503


class RateLimited(SurveyError):
    """Too many requests from one listener; ``retry_after`` is in seconds."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def load_manifest(path: str | Path | None) -> pd.DataFrame:
    """The songs of the survey.

    Args:
        path: a manifest CSV of stage 01; None uses ``data/manifest.csv`` when it
            exists, else builds the demo manifest in memory (``conf/dataset/demo.yaml``).

    Raises:
        ManifestError: the file is missing or invalid.
    """
    if path is None and DEFAULT_MANIFEST.is_file():
        path = DEFAULT_MANIFEST
    if path is not None:
        log.info("survey songs from %s", path)
        return manifest_io.read(path)
    from songfeel.datasets import demo

    config_file = Path(__file__).resolve().parents[2] / "conf/dataset/demo.yaml"
    cfg = OmegaConf.load(config_file) if config_file.is_file() else OmegaConf.create(_DEMO_DATASET)
    manifest, skipped = demo.build_manifest(cfg)
    for row in skipped.itertuples(index=False):
        log.warning("demo track skipped: %s: %s", row.path, row.error)
    log.info("no manifest at %s: survey of the %d demo songs", DEFAULT_MANIFEST, len(manifest))
    return manifest


@dataclass
class Survey:
    """A running survey: settings, songs, clips, database and rate limiter.

    Build one with :meth:`start`; :func:`songfeel.annotate.app.create_app` serves it.
    """

    settings: Settings
    manifest: pd.DataFrame
    library: ClipLibrary
    engine: Engine
    embeddings: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.write_session, self.read_session = session_factories(self.engine)
        self.limiter = ListenerRateLimiter(self.settings.rate_per_second, self.settings.rate_burst,
                                           self.settings.rate_limit_storage)
        tracks = self.manifest[self.manifest["track_id"].isin(self.library.track_ids)]
        self.splits = dict(zip(tracks["track_id"], tracks["split"].astype(str)))
        self.labels = {
            row["track_id"]: {c: str(row[c]) for c in SHOWN_LABELS if c in tracks.columns and str(row[c])}
            for row in tracks.to_dict("records")
        }

    @classmethod
    def start(cls, settings: Settings, manifest: pd.DataFrame | None = None) -> Survey:
        """Load the songs, render their clips, migrate the database and register the songs.

        Args:
            settings: the survey's settings.
            manifest: the songs; None loads ``settings.manifest_path`` (see :func:`load_manifest`).

        Raises:
            ManifestError: the manifest is missing or invalid.
            ValueError: the database URL or the embeddings file is unusable, or fewer than 3 songs have a clip.
            sqlalchemy.exc.OperationalError: the database cannot be reached.
        """
        engine = create_survey_engine(settings.database_url)  # a bad URL or database fails before any audio work
        try:
            migrate(engine)
            embeddings = None
            if settings.embeddings_path is not None:
                embeddings = selection.load_embeddings(settings.embeddings_path)
            if manifest is None:
                manifest = load_manifest(settings.manifest_path)
            library = build_library(manifest, settings.clip_cache, settings.snippet_seconds, settings.snippet_centre,
                                    settings.skip_intro_seconds, settings.sample_rate)
            if len(library) < 3:
                raise ValueError(f"the survey needs at least 3 songs with clips, got {len(library)} "
                                 f"({len(library.skipped)} skipped)")
        except BaseException:
            engine.dispose()
            raise
        if embeddings is not None:
            covered = sum(t in embeddings for t in library.track_ids)
            log.info("uncertainty mode: embeddings of %d of the %d songs from %s", covered, len(library),
                     settings.embeddings_path)
        survey = cls(settings, manifest, library, engine, embeddings)
        survey._register_songs()
        return survey

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # --- listeners ------------------------------------------------------------------------------

    def new_annotator(self) -> str:
        """Start an anonymous listener and return their id (32 hex digits)."""
        annotator_id = uuid.uuid4().hex
        with self.write_session() as session, session.begin():
            session.add(Annotator(id=annotator_id))
        return annotator_id

    def next_triplet(self, annotator_id: str) -> dict:
        """The listener's current question: the unanswered one, else a new one, else ``done``.

        Returns:
            ``triplet_id``, ``clips`` (three ``clip_id``, ``audio_url``, ``label`` A/B/C), ``position``
            (1-based), ``answered``, ``total`` and ``done``; when done, ``triplet_id`` is None and
            ``clips`` empty.

        Raises:
            NotFound: unknown listener. RateLimited: too many requests.
            Unavailable: no question can be formed (fewer than three songs in any split).
        """
        self._require_annotator(annotator_id)
        self._spend(annotator_id)
        return self._retrying(lambda session: self._next_in(session, annotator_id))

    def record_answer(self, annotator_id: str, triplet_id: str, odd_one_out: str | None,
                      client_answer_id: str) -> tuple[dict, bool]:
        """Store one answer, durably, once.

        Args:
            annotator_id: the listener.
            triplet_id: the question they answer (theirs).
            odd_one_out: the ``clip_id`` of the odd one out, or None for "can't decide".
            client_answer_id: the client's id of this answer; a retry with the same id and
                body returns the stored answer instead of storing another.

        Returns:
            the stored answer (``answer_id``, ``annotator_id``, ``triplet_id``, ``odd_one_out``,
            ``client_answer_id``, ``answered``, ``total``) and whether it was created now.

        Raises:
            NotFound: unknown listener or triplet. Forbidden: another listener's triplet.
            Invalid: ``odd_one_out`` is not one of the triplet's clips.
            Conflict: the ``client_answer_id`` was used for a different answer, or the triplet
                was already answered under another ``client_answer_id``.
            RateLimited: too many requests.
        """
        self._require_annotator(annotator_id)
        self._spend(annotator_id)
        try:
            return self._retrying(
                lambda session: self._answer_in(session, annotator_id, triplet_id, odd_one_out, client_answer_id),
                retry_integrity=False,
            )
        except IntegrityError:
            # A concurrent request stored the same answer (or answered the triplet) first.
            with self.read_session() as session, session.begin():
                existing = session.scalar(select(Answer).where(Answer.annotator_id == annotator_id,
                                                               Answer.client_answer_id == client_answer_id))
                if existing is None:
                    raise Conflict(f"triplet {triplet_id} was already answered under another client_answer_id")
                return self._same_answer(session, existing, triplet_id, odd_one_out), False

    # --- admin ----------------------------------------------------------------------------------

    def export_rows(self, include_repeats: bool = True, exclude_flagged: bool = False) -> list[dict[str, str]]:
        """Every answer, oldest first, in songfeel's human-answer format.

        Columns ``song1, song2, song3`` (track ids in the order shown), ``odd_one_out``
        (a track id, or '' for "can't decide") and ``annotator``.

        Args:
            include_repeats: keep the answers to repeated questions.
            exclude_flagged: leave out listeners flagged as unreliable in :meth:`stats`.
        """
        with self.read_session() as session, session.begin():
            rows = session.execute(
                select(Triplet.song_a, Triplet.song_b, Triplet.song_c, Answer.odd_one_out_song,
                       Answer.annotator_id, Triplet.repeat_of)
                .join(Triplet, Triplet.id == Answer.triplet_id).order_by(Answer.id)
            ).all()
        flagged = set(self.stats()["flagged_annotators"]) if exclude_flagged else set()
        return [
            {"song1": a, "song2": b, "song3": c, "odd_one_out": odd or "", "annotator": annotator}
            for a, b, c, odd, annotator, repeat_of in rows
            if (include_repeats or repeat_of is None) and annotator not in flagged
        ]

    def export_csv(self, **options) -> str:
        """:meth:`export_rows` as CSV text with a header row."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.export_rows(**options))
        return buffer.getvalue()

    def stats(self, with_questions: bool = False) -> dict:
        """Answers per question, majority agreement and per-listener reliability (see :mod:`.stats`)."""
        with self.read_session() as session, session.begin():
            rows = session.execute(
                select(Answer.annotator_id, Triplet.id, Triplet.question_id, Triplet.song_a, Triplet.song_b,
                       Triplet.song_c, Answer.odd_one_out_song, Triplet.repeat_of)
                .join(Triplet, Triplet.id == Answer.triplet_id).order_by(Answer.id)
            ).all()
            exposures = dict(session.execute(select(Song.track_id, Song.exposures)).all())
            n_annotators = session.scalar(select(func.count()).select_from(Annotator))
        answers = [
            {"annotator": r[0], "triplet_id": r[1], "question_id": r[2], "songs": (r[3], r[4], r[5]),
             "odd_one_out": r[6], "repeat_of": r[7]}
            for r in rows
        ]
        report = survey_stats(answers, self.settings.min_repeats, self.settings.reliability_threshold,
                              with_questions=with_questions)
        served = [exposures.get(t, 0) for t in self.library.track_ids]
        report["annotators_started"] = int(n_annotators or 0)
        report["songs"] = {"n": len(served), "skipped": len(self.library.skipped),
                           "min_exposures": min(served), "max_exposures": max(served),
                           "mean_exposures": float(np.mean(served))}
        return report

    def heard_songs(self, annotator_id: str) -> list[dict[str, str]] | None:
        """The songs a listener heard, with their labels, once the session is complete; else None."""
        with self.read_session() as session, session.begin():
            answered = session.scalar(select(func.count()).select_from(Answer)
                                      .where(Answer.annotator_id == annotator_id))
            if not answered or answered < self.settings.questions_per_session:
                return None
            triplets = session.scalars(select(Triplet).where(Triplet.annotator_id == annotator_id)
                                       .order_by(Triplet.position)).all()
        heard = list(dict.fromkeys(t for triplet in triplets for t in triplet.songs))
        return [{"track_id": t, **self.labels.get(t, {})} for t in heard]

    def counts(self) -> dict[str, int]:
        """Rows per table (for health checks and tests)."""
        with self.read_session() as session, session.begin():
            return {table.__tablename__: int(session.scalar(select(func.count()).select_from(table)))
                    for table in (Annotator, Triplet, Answer, Question, Song)}

    # --- internals ------------------------------------------------------------------------------

    def _register_songs(self) -> None:
        """Add the library's songs to ``songs`` (exposures 0) and update changed splits."""
        with self.write_session() as session, session.begin():
            known = {s.track_id: s for s in session.scalars(select(Song))}
            added = 0
            for track_id, split in self.splits.items():
                if track_id not in known:
                    session.add(Song(track_id=track_id, split=split, exposures=0))
                    added += 1
                elif known[track_id].split != split:
                    known[track_id].split = split
        log.info("%d songs in the survey (%d new)", len(self.splits), added)

    def _require_annotator(self, annotator_id: str) -> None:
        with self.read_session() as session, session.begin():
            if session.get(Annotator, annotator_id) is None:
                raise NotFound(f"unknown annotator_id {annotator_id}: start a session with POST /api/sessions")

    def _spend(self, annotator_id: str) -> None:
        wait = self.limiter.take(annotator_id)
        if wait > 0:
            raise RateLimited(f"too many requests for this annotator; retry in {wait:.1f} s", wait)

    def _retrying(self, work, retry_integrity: bool = True):
        """Run ``work(session)`` in a write transaction, again when it lost a race or a lock."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.write_session() as session, session.begin():
                    return work(session)
            except IntegrityError:
                if not retry_integrity or attempt == ATTEMPTS:
                    raise
                log.debug("transaction lost a race (attempt %d), retrying", attempt)
            except OperationalError as exc:
                if "locked" not in str(exc).lower() and "deadlock" not in str(exc).lower():
                    raise
                if attempt == ATTEMPTS:  # still busy after every attempt: a 503 the client may retry, not a 500
                    raise Unavailable("the database is busy; retry") from exc
                log.warning("database busy (attempt %d): %s", attempt, exc.orig)
        raise AssertionError("unreachable: every attempt returns or raises")

    def _payload(self, triplet: Triplet, answered: int) -> dict:
        return {
            "triplet_id": triplet.id,
            "clips": [{"clip_id": c, "audio_url": f"/api/clips/{c}", "label": label}
                      for c, label in zip(triplet.clips, "ABC")],
            "position": triplet.position,
            "answered": answered,
            "total": self.settings.questions_per_session,
            "done": False,
        }

    def _next_in(self, session: Session, annotator_id: str) -> dict:
        answered = session.scalar(select(func.count()).select_from(Answer).where(Answer.annotator_id == annotator_id))
        asked = session.scalar(select(func.count()).select_from(Triplet).where(Triplet.annotator_id == annotator_id))
        pending = session.scalars(
            select(Triplet).outerjoin(Answer, Answer.triplet_id == Triplet.id)
            .where(Triplet.annotator_id == annotator_id, Answer.id.is_(None))
            .order_by(Triplet.position).limit(1)
        ).first()
        if pending is not None:
            clips = [self.library.for_track(t) for t in pending.songs]
            if all(clips):
                ids = [c.clip_id for c in clips]
                if ids != pending.clips:  # the clips were re-rendered (new window or audio) since it was asked
                    pending.clip_a, pending.clip_b, pending.clip_c = ids
                return self._payload(pending, answered)
            log.info("dropping unanswered triplet %s: a song is no longer served", pending.id)
            self._count_shown(session, pending.question_id, pending.songs, -1, pending.repeat_of is None)
            session.delete(pending)
            session.flush()
            asked -= 1
        total = self.settings.questions_per_session
        if answered >= total:
            return {"triplet_id": None, "clips": [], "position": None, "answered": answered, "total": total,
                    "done": True}
        position = asked + 1
        rng = selection.annotator_rng(self.settings.seed, annotator_id, position)
        triplet = None
        if position in selection.repeat_positions(annotator_id, total, self.settings.repeat_fraction,
                                                  self.settings.repeat_min_gap, self.settings.seed):
            triplet = self._repeat(session, annotator_id, position, rng)
        if triplet is None:
            triplet = self._new(session, annotator_id, position, rng)
        session.add(triplet)
        session.flush()
        return self._payload(triplet, answered)

    def _repeat(self, session: Session, annotator_id: str, position: int, rng) -> Triplet | None:
        """A repeat of one of the listener's earlier answered questions, clips rotated; None if none fits."""
        repeated = select(Triplet.repeat_of).where(Triplet.annotator_id == annotator_id,
                                                   Triplet.repeat_of.is_not(None))
        originals = session.execute(
            select(Triplet, Answer.odd_one_out_song).join(Answer, Answer.triplet_id == Triplet.id)
            .where(Triplet.annotator_id == annotator_id, Triplet.repeat_of.is_(None),
                   Triplet.position <= position - self.settings.repeat_min_gap, Triplet.id.not_in(repeated))
            .order_by(Triplet.position)
        ).all()
        usable = [(t, odd) for t, odd in originals if all(self.library.for_track(s) for s in t.songs)]
        decided = [t for t, odd in usable if odd is not None]
        candidates = decided or [t for t, _ in usable]
        if not candidates:
            return None
        original = candidates[int(rng.integers(len(candidates)))]
        songs = selection.rotate(original.songs, rng)
        self._count_shown(session, original.question_id, songs, +1, counts_exposure=False)
        return self._triplet(annotator_id, position, original.question_id, songs, repeat_of=original.id)

    def _new(self, session: Session, annotator_id: str, position: int, rng) -> Triplet:
        """A question new to the listener: a shared one (for agreement) or least-asked songs."""
        asked_questions = select(Triplet.question_id).where(Triplet.annotator_id == annotator_id)
        songs = None
        if self.settings.overlap_fraction > 0 and rng.random() < self.settings.overlap_fraction:
            shared = session.scalars(
                select(Question).where(Question.n_answers >= 1, Question.n_answers < self.settings.overlap_target,
                                       Question.id.not_in(asked_questions))
                .order_by(Question.n_answers).limit(64)
            ).all()
            shared = [q for q in shared if all(self.library.for_track(t) for t in (q.song_1, q.song_2, q.song_3))]
            if shared:
                fewest = [q for q in shared if q.n_answers == shared[0].n_answers]
                chosen = fewest[int(rng.integers(len(fewest)))]
                songs = [chosen.song_1, chosen.song_2, chosen.song_3]
        if songs is None:
            exposures = {t: 0 for t in self.splits}
            for track_id, n in session.execute(select(Song.track_id, Song.exposures)):
                if track_id in exposures:
                    exposures[track_id] = n
            seen = session.execute(select(Question.song_1, Question.song_2, Question.song_3)
                                   .where(Question.id.in_(asked_questions))).all()
            chosen = selection.choose_songs(exposures, self.splits, {frozenset(s) for s in seen}, rng,
                                            self.embeddings, self.settings.uncertainty_pool,
                                            self.settings.same_split)
            if chosen is None:
                raise Unavailable("no question can be asked: no split has three songs with clips")
            songs = list(chosen)
        songs = [songs[i] for i in rng.permutation(3)]
        qid = question_id(songs)
        song_1, song_2, song_3 = sorted(songs)
        add_if_absent(session, Question, id=qid, song_1=song_1, song_2=song_2, song_3=song_3, n_asked=0, n_answers=0)
        self._count_shown(session, qid, songs, +1, counts_exposure=True)
        return self._triplet(annotator_id, position, qid, songs, repeat_of=None)

    def _triplet(self, annotator_id: str, position: int, qid: str, songs: list[str], repeat_of: str | None) -> Triplet:
        clips = [self.library.for_track(t).clip_id for t in songs]
        return Triplet(id=uuid.uuid4().hex, annotator_id=annotator_id, position=position, question_id=qid,
                       repeat_of=repeat_of, song_a=songs[0], song_b=songs[1], song_c=songs[2],
                       clip_a=clips[0], clip_b=clips[1], clip_c=clips[2])

    @staticmethod
    def _count_shown(session: Session, qid: str, songs, step: int, counts_exposure: bool) -> None:
        """Add ``step`` to the question's ``n_asked`` and (for non-repeats) to its songs' exposures.

        Updates are SQL expressions (no lost updates) in track-id order (no deadlocks).
        """
        session.execute(update(Question).where(Question.id == qid).values(n_asked=Question.n_asked + step))
        if counts_exposure:
            for track_id in sorted(songs):
                session.execute(update(Song).where(Song.track_id == track_id)
                                .values(exposures=Song.exposures + step))

    def _answer_in(self, session: Session, annotator_id: str, triplet_id: str, odd_one_out: str | None,
                   client_answer_id: str) -> tuple[dict, bool]:
        triplet = session.get(Triplet, triplet_id)
        if triplet is None:
            raise NotFound(f"unknown triplet_id {triplet_id}")
        if triplet.annotator_id != annotator_id:
            raise Forbidden(f"triplet {triplet_id} was asked to another annotator")
        existing = session.scalar(select(Answer).where(Answer.annotator_id == annotator_id,
                                                       Answer.client_answer_id == client_answer_id))
        if existing is not None:
            return self._same_answer(session, existing, triplet_id, odd_one_out), False
        if odd_one_out is not None and odd_one_out not in triplet.clips:
            raise Invalid(f"odd_one_out must be null or one of the clip ids of triplet {triplet_id}")
        prior = session.scalar(select(Answer).where(Answer.triplet_id == triplet_id))
        if prior is not None:
            if prior.client_answer_id == client_answer_id:  # committed by a concurrent copy of this request
                return self._same_answer(session, prior, triplet_id, odd_one_out), False
            raise Conflict(f"triplet {triplet_id} was already answered under another client_answer_id")
        answer = Answer(annotator_id=annotator_id, triplet_id=triplet_id, client_answer_id=client_answer_id,
                        odd_one_out_clip=odd_one_out,
                        odd_one_out_song=triplet.songs[triplet.clips.index(odd_one_out)] if odd_one_out else None)
        session.add(answer)
        session.flush()
        session.execute(update(Question).where(Question.id == triplet.question_id)
                        .values(n_answers=Question.n_answers + 1))
        return self._answer_payload(session, answer), True

    def _same_answer(self, session: Session, existing: Answer, triplet_id: str, odd_one_out: str | None) -> dict:
        """The stored answer when a retry repeats it; Conflict when the body differs."""
        if existing.triplet_id != triplet_id or existing.odd_one_out_clip != odd_one_out:
            raise Conflict(f"client_answer_id {existing.client_answer_id} was already used for a different answer")
        return self._answer_payload(session, existing)

    def _answer_payload(self, session: Session, answer: Answer) -> dict:
        answered = session.scalar(select(func.count()).select_from(Answer)
                                  .where(Answer.annotator_id == answer.annotator_id))
        return {"answer_id": answer.id, "annotator_id": answer.annotator_id, "triplet_id": answer.triplet_id,
                "odd_one_out": answer.odd_one_out_clip, "client_answer_id": answer.client_answer_id,
                "answered": int(answered), "total": self.settings.questions_per_session}


__all__ = [
    "EXPORT_COLUMNS",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "Survey",
    "SurveyError",
    "Unavailable",
    "load_manifest",
]
