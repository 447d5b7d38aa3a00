"""Alembic environment of the survey's database.

The app runs migrations itself (:func:`songfeel.annotate.db.migrate`), handing
Alembic an open connection in ``config.attributes["connection"]``. A new
revision goes in ``versions/`` (``down_revision`` = the previous one); to draft
one from the models, build the same ``Config`` as ``migrate`` does and call
``alembic.command.revision(config, message, autogenerate=True)`` with
``config.set_main_option("sqlalchemy.url", URL)``.
"""

from alembic import context

from songfeel.annotate.db import Base, create_survey_engine

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    engine = create_survey_engine(url)
    with engine.begin() as connection:
        run_migrations(connection)
    engine.dispose()
