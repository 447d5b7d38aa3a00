"""The survey's database: migrations, URLs, SQLite's durability settings, settings validation."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from songfeel.annotate.db import Base, create_survey_engine, migrate, normalise_url
from songfeel.annotate.settings import Settings


def test_migrations_build_the_models_schema(database_url):
    engine = create_survey_engine(database_url)
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
        tables = set(inspect(connection).get_table_names())
    assert {"songs", "questions", "annotators", "triplets", "answers"} <= tables
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    engine = create_survey_engine(f"sqlite:///{tmp_path / 'nested' / 'survey.sqlite'}")
    migrate(engine)
    assert (tmp_path / "nested" / "survey.sqlite").is_file()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def test_urls():
    assert normalise_url("postgresql://u:p@h:5/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///data/survey.sqlite").database == "data/survey.sqlite"
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url"):
        with pytest.raises(ValueError):
            normalise_url(bad)


@pytest.mark.parametrize("change, message", [
    ({"admin_token": ""}, "admin_token"),
    ({"snippet_seconds": 9.0}, "snippet_seconds"),
    ({"snippet_seconds": 25.0}, "snippet_seconds"),
    ({"snippet_centre": 1.0}, "snippet_centre"),
    ({"repeat_fraction": 1.0}, "repeat_fraction"),
    ({"questions_per_session": 0}, "questions_per_session"),
    ({"rate_per_second": 0.0}, "rate_per_second"),
])
def test_settings_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{"admin_token": "a-long-enough-admin-token", **change})
    assert Settings(admin_token="a-long-enough-admin-token").snippet_seconds == 15.0


def test_add_if_absent_waits_for_a_concurrent_insert_and_adds_nothing(database_url):
    """Two listeners create the same question at once: the second neither fails nor duplicates it.

    The first transaction inserts the question and holds it uncommitted; the second, in another thread,
    must wait for it (PostgreSQL's unique index, SQLite's write lock), then insert nothing.
    """
    import threading

    from sqlalchemy import select

    from songfeel.annotate.db import Question, add_if_absent, session_factories

    engine = create_survey_engine(database_url)
    migrate(engine)
    write, _ = session_factories(engine)
    row = dict(id="q1", song_1="a", song_2="b", song_3="c", n_asked=0, n_answers=0)
    errors, done = [], threading.Event()

    def second() -> None:
        try:
            with write() as session, session.begin():
                add_if_absent(session, Question, **{**row, "n_asked": 99})
        except Exception as exc:  # reported below: the test must see it
            errors.append(exc)
        done.set()

    with write() as session, session.begin():
        add_if_absent(session, Question, **row)
        thread = threading.Thread(target=second)
        thread.start()
        assert not done.wait(timeout=1.0), "the second insert did not wait for the first transaction"
    thread.join(timeout=60)
    assert done.is_set() and errors == []
    with write() as session:
        stored = session.scalars(select(Question)).all()
    engine.dispose()
    assert [(q.id, q.n_asked) for q in stored] == [("q1", 0)]
    with pytest.raises(ValueError, match="unsupported"):
        add_if_absent(_FakeSession("mysql"), Question, **row)


class _FakeSession:
    """Only what :func:`add_if_absent` asks of a session: its bind's dialect name."""

    def __init__(self, dialect: str) -> None:
        self.dialect = type("Dialect", (), {"name": dialect})()

    def get_bind(self):
        return self


def test_a_database_busy_past_every_attempt_is_a_503_not_a_500():
    """A lock that outlasts every attempt is Unavailable (503, retry), as the API documents."""
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    from songfeel.annotate.survey import ATTEMPTS, Survey, Unavailable

    attempts = []

    @contextmanager
    def busy_session():
        attempts.append(1)
        raise OperationalError("UPDATE annotators", {}, Exception("database is locked"))
        yield

    survey = object.__new__(Survey)  # only its write sessions matter here
    survey.write_session = busy_session
    with pytest.raises(Unavailable, match="busy") as raised:
        survey._retrying(lambda session: None)
    assert len(attempts) == ATTEMPTS and isinstance(raised.value.__cause__, OperationalError)

