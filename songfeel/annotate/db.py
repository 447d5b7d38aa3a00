"""The survey's database: SQLAlchemy 2 models, the engine, and Alembic migrations.

Tables:

=============  ==============================================================
``songs``      one row per manifest song: ``track_id``, ``split``, ``exposures``
               (non-repeat triplets that showed it; drives even coverage)
``questions``  one row per unordered set of three songs (``id`` = SHA-1 of the
               sorted track ids): ``n_asked``, ``n_answers``
``annotators`` anonymous listeners: ``id`` (32 hex digits), ``created_at``
``triplets``   one question shown to one listener: clips and songs in the order
               shown (A, B, C), ``position`` (1-based, unique per listener),
               ``repeat_of`` (the listener's earlier triplet it repeats)
``answers``    one per triplet (``triplet_id`` unique): the odd one out's song
               and clip, or NULL for "can't decide"; ``client_answer_id`` is
               unique per listener, which makes retries idempotent
=============  ==============================================================

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` (a
commit is on disk before it returns), a 30 s ``busy_timeout`` and foreign keys
on; every write transaction starts with ``BEGIN IMMEDIATE`` so that concurrent
writers queue instead of failing. PostgreSQL is used through psycopg 3.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: SQLite waits this long for a lock before giving up, milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Execution option that makes a SQLite transaction start with a deferred ``BEGIN`` (read-only work).
READ_ONLY = "songfeel_read_only"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def question_id(track_ids) -> str:
    """The id of an unordered set of three songs: SHA-1 hex of the sorted track ids."""
    return hashlib.sha1("\0".join(sorted(track_ids)).encode()).hexdigest()


class Base(DeclarativeBase):
    """Declarative base of the survey's tables."""


class Song(Base):
    """A song of the survey and how often a new question showed it."""

    __tablename__ = "songs"

    track_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    split: Mapped[str] = mapped_column(String(32), default="", server_default="")
    exposures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Question(Base):
    """An unordered set of three songs (sorted in ``song_1..3``), asked to one or more listeners."""

    __tablename__ = "questions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    song_1: Mapped[str] = mapped_column(String(255))
    song_2: Mapped[str] = mapped_column(String(255))
    song_3: Mapped[str] = mapped_column(String(255))
    n_asked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_answers: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)


class Annotator(Base):
    """An anonymous listener."""

    __tablename__ = "annotators"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Triplet(Base):
    """One question shown to one listener, its songs and clips in the order shown (A, B, C)."""

    __tablename__ = "triplets"
    __table_args__ = (UniqueConstraint("annotator_id", "position", name="uq_triplets_annotator_position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), index=True)
    repeat_of: Mapped[str | None] = mapped_column(ForeignKey("triplets.id"), nullable=True, index=True)
    song_a: Mapped[str] = mapped_column(String(255))
    song_b: Mapped[str] = mapped_column(String(255))
    song_c: Mapped[str] = mapped_column(String(255))
    clip_a: Mapped[str] = mapped_column(String(32))
    clip_b: Mapped[str] = mapped_column(String(32))
    clip_c: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def songs(self) -> list[str]:
        return [self.song_a, self.song_b, self.song_c]

    @property
    def clips(self) -> list[str]:
        return [self.clip_a, self.clip_b, self.clip_c]


class Answer(Base):
    """A listener's answer to a triplet: the odd one out, or NULL for "can't decide"."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("annotator_id", "client_answer_id", name="uq_answers_annotator_client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    triplet_id: Mapped[str] = mapped_column(ForeignKey("triplets.id"), unique=True)
    client_answer_id: Mapped[str] = mapped_column(String(64))
    odd_one_out_song: Mapped[str | None] = mapped_column(String(255), nullable=True)
    odd_one_out_clip: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def normalise_url(database_url: str) -> URL:
    """Parse a database URL; ``postgresql://`` and ``postgres://`` select psycopg 3.

    Raises:
        ValueError: the URL is malformed, an in-memory SQLite database, or neither SQLite nor PostgreSQL.
    """
    try:
        url = make_url(database_url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ValueError(f"malformed database URL: {exc}") from exc
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("the survey needs a SQLite file (sqlite:///path/to/survey.sqlite), not an in-memory database")
        return url
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///file or postgresql://...")


def create_survey_engine(database_url: str) -> Engine:
    """An engine for the survey's database, configured for durability and concurrency.

    SQLite: the parent folder is created; WAL, ``synchronous=FULL``,
    ``busy_timeout``, foreign keys; ``BEGIN IMMEDIATE`` for write transactions
    (a connection with the :data:`READ_ONLY` execution option uses ``BEGIN``).

    Raises:
        ValueError: see :func:`normalise_url`.
    """
    url = normalise_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_size=10, max_overflow=20, pool_timeout=60, pool_pre_ping=True)
    Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           pool_size=10, max_overflow=20, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode (journal_mode=%s) for %s", mode, url.database)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` with Alembic (``songfeel/annotate/migrations``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database schema at %s (%s)", revision, engine.url.render_as_string(hide_password=True))


def add_if_absent(session: Session, model: type[Base], **values) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING``: add one row unless its primary key is already stored.

    Unlike ``session.get`` then ``session.add``, this cannot lose a race: a transaction that inserts
    the same key concurrently makes this one wait (PostgreSQL) or is serialised before it (SQLite's
    ``BEGIN IMMEDIATE``), and then nothing is inserted and no ``IntegrityError`` is raised.

    Raises:
        ValueError: the session is bound to neither SQLite nor PostgreSQL.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql_insert(model)
    elif dialect == "sqlite":
        statement = sqlite_insert(model)
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    session.execute(statement.values(**values).on_conflict_do_nothing())


def session_factories(engine: Engine) -> tuple[sessionmaker, sessionmaker]:
    """Session factories for write work and for read-only work (deferred ``BEGIN`` on SQLite)."""
    write = sessionmaker(engine, expire_on_commit=False)
    read = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
    return write, read


__all__ = [
    "Annotator",
    "Answer",
    "Base",
    "MIGRATIONS_DIR",
    "Question",
    "Song",
    "Triplet",
    "add_if_absent",
    "create_survey_engine",
    "migrate",
    "normalise_url",
    "question_id",
    "session_factories",
    "utcnow",
]
