"""The listening survey: a web app that crowdsources odd-one-out answers for stage 03.

    python -m songfeel.annotate --host 127.0.0.1 --port 8000 \
        --database-url sqlite:///data/survey.sqlite --admin-token TOKEN

Modules: :mod:`.settings` (configuration), :mod:`.clips` (snippets), :mod:`.selection`
(which question to ask), :mod:`.db` (models, engine, migrations), :mod:`.survey`
(the logic), :mod:`.stats` (agreement and reliability), :mod:`.ratelimit`,
:mod:`.app` (FastAPI) and :mod:`.__main__` (the command line).
"""

from songfeel.annotate.settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings):
    """The survey's ASGI app (see :func:`songfeel.annotate.app.create_app`)."""
    from songfeel.annotate.app import create_app as _create_app

    return _create_app(settings)
