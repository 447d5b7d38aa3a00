"""Command line of the listening survey: ``python -m songfeel.annotate --help``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn
from sqlalchemy.exc import OperationalError

from songfeel.annotate.settings import Settings
from songfeel.errors import ManifestError

log = logging.getLogger("songfeel.annotate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (see ``--help``)."""
    defaults = Settings.__dataclass_fields__
    d = {name: field.default for name, field in defaults.items()}
    parser = argparse.ArgumentParser(
        prog="python -m songfeel.annotate",
        description="Serve the odd-one-out listening survey for the songs of a stage-01 manifest.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s)")
    parser.add_argument("--database-url", default=d["database_url"],
                        help="SQLAlchemy URL: sqlite:///file (default %(default)s) or postgresql://user:pass@host/db")
    parser.add_argument("--admin-token", default=os.environ.get("SURVEY_ADMIN_TOKEN", ""),
                        help="bearer token of /api/export and /api/stats (default: $SURVEY_ADMIN_TOKEN)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest CSV of stage 01 (default: data/manifest.csv if present, else the demo songs)")
    parser.add_argument("--clip-cache", type=Path, default=d["clip_cache"],
                        help="folder of rendered snippets (default %(default)s)")
    parser.add_argument("--snippet-seconds", type=float, default=d["snippet_seconds"],
                        help="snippet length, 10-20 s (default %(default)s)")
    parser.add_argument("--snippet-centre", type=float, default=d["snippet_centre"],
                        help="snippet centre as a fraction of the song (default %(default)s)")
    parser.add_argument("--skip-intro-seconds", type=float, default=d["skip_intro_seconds"],
                        help="snippets never start before this, s (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=d["sample_rate"],
                        help="sample rate of the snippets, Hz (default %(default)s)")
    parser.add_argument("--questions", type=int, default=d["questions_per_session"],
                        help="questions per listener, repeats included (default %(default)s)")
    parser.add_argument("--repeat-fraction", type=float, default=d["repeat_fraction"],
                        help="share of repeated questions (default %(default)s)")
    parser.add_argument("--overlap-fraction", type=float, default=d["overlap_fraction"],
                        help="share of questions shared with other listeners (default %(default)s)")
    parser.add_argument("--overlap-target", type=int, default=d["overlap_target"],
                        help="answers wanted per shared question (default %(default)s)")
    parser.add_argument("--any-split", action="store_true",
                        help="allow questions across manifest splits (stage 03 drops them)")
    parser.add_argument("--min-repeats", type=int, default=d["min_repeats"],
                        help="repeats before a listener can be flagged (default %(default)s)")
    parser.add_argument("--reliability-threshold", type=float, default=d["reliability_threshold"],
                        help="flag listeners whose repeats agree less often (default %(default)s)")
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="per-song embeddings (CSV track_id,e0,... or NPZ track_ids/embeddings): "
                             "ask where the model is least certain")
    parser.add_argument("--uncertainty-pool", type=int, default=d["uncertainty_pool"],
                        help="companions considered per question in the uncertainty mode (default %(default)s)")
    parser.add_argument("--rate-per-second", type=float, default=d["rate_per_second"],
                        help="per-listener requests per second, sustained (default %(default)s)")
    parser.add_argument("--rate-burst", type=int, default=d["rate_burst"],
                        help="per-listener burst of requests (default %(default)s)")
    parser.add_argument("--rate-limit-storage", default=d["rate_limit_storage"],
                        help="where the rate limiter counts: memory:// (per process, default) or a limits storage "
                             "URI that every worker shares, e.g. redis://localhost:6379")
    parser.add_argument("--seed", type=int, default=d["seed"], help="seed of every random choice (default %(default)s)")
    parser.add_argument("--title", default=d["title"], help="title shown on the pages")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` of parsed options.

    Raises:
        ValueError: an option is out of range or the admin token is missing.
    """
    return Settings(
        database_url=args.database_url, admin_token=args.admin_token, manifest_path=args.manifest,
        clip_cache=args.clip_cache, snippet_seconds=args.snippet_seconds, snippet_centre=args.snippet_centre,
        skip_intro_seconds=args.skip_intro_seconds, sample_rate=args.sample_rate,
        questions_per_session=args.questions, repeat_fraction=args.repeat_fraction,
        overlap_fraction=args.overlap_fraction, overlap_target=args.overlap_target, same_split=not args.any_split,
        min_repeats=args.min_repeats, reliability_threshold=args.reliability_threshold,
        embeddings_path=args.embeddings, uncertainty_pool=args.uncertainty_pool,
        rate_per_second=args.rate_per_second, rate_burst=args.rate_burst,
        rate_limit_storage=args.rate_limit_storage, seed=args.seed, title=args.title,
    )


def main(argv: list[str] | None = None) -> int:
    """Start the survey; returns the exit status (2 for bad options, an unusable manifest or database)."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin otherwise
    try:
        settings = settings_from(args)
        from songfeel.annotate.app import create_app

        app = create_app(settings)
    except (ValueError, ManifestError, OperationalError, OSError) as exc:
        log.error("cannot start the survey: %s", exc)
        return 2
    log.info("survey on http://%s:%d/ (database %s)", args.host, args.port,
             app.state.survey.engine.url.render_as_string(hide_password=True))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
