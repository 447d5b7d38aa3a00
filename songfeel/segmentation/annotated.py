"""Structure evaluation on songs a user has annotated and owns the audio of (SALAMI, Harmonix, JAMS).

The medley benchmark needs no download; public structure annotations (SALAMI,
https://github.com/DDMAL/salami-data-public; the Harmonix Set,
https://github.com/urinieto/harmonixset; any JAMS dataset) come without their audio.
Where a user has the audio, this scores SSM-Net and the baselines on it, exactly as
on the medleys (:func:`songfeel.segmentation.scoring.evaluate_songs`):

``python -m songfeel.segmentation.annotated SONGS.csv --model CKPT --out-dir DIR``

or, inside the pipeline, ``segmentation.annotated.songs=SONGS.csv`` for ``05_evaluate_segmentation.py``.
``SONGS.csv`` has the columns ``audio_path, annotation_path`` and, optionally,
``song_id`` (default: the audio file's stem) and ``format`` (``auto``, ``jams``,
``salami`` or ``harmonix``; see :func:`~songfeel.segmentation.annotations.load_annotation`).
Relative paths are relative to the CSV's folder. A song whose audio or annotation
cannot be read is skipped, named with its cause in ``skipped.csv``, and the rest
are scored.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from songfeel.errors import ManifestError
from songfeel.segmentation.cli import (
    add_model_arguments,
    load_tuned_model,
    start_logging,
)
from songfeel.segmentation.scoring import evaluate_songs
from songfeel.segmentation.tables import comparison_report, summary_markdown

log = logging.getLogger(__name__)

#: Required columns of a song list; ``song_id`` and ``format`` are optional.
SONG_LIST_COLUMNS = ("audio_path", "annotation_path")

#: Files :func:`write_evaluation` writes in its folder (``paired.csv``: SSM-Net minus each baseline).
OUTPUT_FILES = ("per_song.csv", "summary.csv", "paired.csv", "summary.md", "skipped.csv")


def read_song_list(path: str | Path) -> pd.DataFrame:
    """Read a song list: ``audio_path, annotation_path`` (+ ``song_id``, ``format``), paths resolved.

    Returns:
        columns ``song_id, audio_path, annotation_path, format``; relative paths are
        joined to the CSV's folder; a missing ``song_id`` is the audio file's stem and
        a missing ``format`` is ``auto``.

    Raises:
        ManifestError: the file is missing or unreadable, lacks a required column, is
            empty, or repeats a ``song_id`` (the file is named).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the song list: {exc}") from exc
    missing = [column for column in SONG_LIST_COLUMNS if column not in table.columns]
    if missing:
        raise ManifestError(f"{path}: the song list lacks columns {missing} (it needs {list(SONG_LIST_COLUMNS)})")
    if table.empty:
        raise ManifestError(f"{path}: the song list has no songs")

    def resolve(value: str) -> str:
        value_path = Path(value).expanduser()
        return str(value_path if value_path.is_absolute() else path.parent / value_path)

    songs = pd.DataFrame({
        "audio_path": table["audio_path"].map(resolve),
        "annotation_path": table["annotation_path"].map(resolve),
    })
    given_ids = table["song_id"] if "song_id" in table.columns else pd.Series("", index=table.index)
    songs.insert(0, "song_id", [sid or Path(audio).stem for sid, audio in zip(given_ids, table["audio_path"],
                                                                               strict=True)])
    songs["format"] = (table["format"].replace("", "auto") if "format" in table.columns else "auto")
    repeated = sorted(songs.loc[songs["song_id"].duplicated(), "song_id"].unique())
    if repeated:
        raise ManifestError(f"{path}: song_id repeated: {repeated[:5]}")
    return songs


def write_evaluation(per_song: pd.DataFrame, summary: pd.DataFrame, differences: pd.DataFrame, markdown: str,
                     skipped: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write :data:`OUTPUT_FILES` into ``out_dir`` (created); returns them by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in OUTPUT_FILES}
    per_song.to_csv(paths["per_song.csv"], index=False)
    summary.to_csv(paths["summary.csv"])
    differences.to_csv(paths["paired.csv"])
    paths["summary.md"].write_text(markdown)
    skipped.to_csv(paths["skipped.csv"], index=False)
    return paths


def evaluate_song_list(model, config, songs_csv: str | Path, out_dir: str | Path,
                       plot_dir: str | Path | None = None, progress: bool = True
                       ) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Score every method on the songs of ``songs_csv`` and write the results to ``out_dir``.

    Args:
        model: a trained SSM-Net.
        config: the ``structure`` config or a checkpoint's; reads ``features`` and ``eval``.
        songs_csv: the song list (:func:`read_song_list`).
        out_dir: folder for :data:`OUTPUT_FILES`.
        plot_dir: where to draw ``eval.n_plots`` songs; None draws none.
        progress: show a tqdm bar.

    Returns:
        flat metrics (``<method>/<score>``, and ``ssmnet_minus_<baseline>/<score>_diff...``),
        the summary and the skipped songs.

    Raises:
        ManifestError: the song list is unusable.
        ValueError: no song could be scored (each cause is named).
    """
    songs = read_song_list(songs_csv)
    per_song, summary, skipped = evaluate_songs(model, songs, config, plot_dir, progress, skip_errors=True)
    differences, flat, markdown = comparison_report(per_song, summary, config)
    write_evaluation(per_song, summary, differences, markdown, skipped, out_dir)
    if len(skipped):
        log.warning("structure: %d of %d annotated songs skipped (see %s)", len(skipped), len(songs),
                    Path(out_dir) / "skipped.csv")
    return flat, summary, skipped


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0, or 1 when nothing could be scored)."""
    parser = argparse.ArgumentParser(
        prog="python -m songfeel.segmentation.annotated",
        description="Score SSM-Net, Foote and Laplacian segmentation on annotated songs you have the audio of.")
    parser.add_argument("songs", type=Path, help="CSV with audio_path, annotation_path [, song_id, format]")
    add_model_arguments(parser, "folder for per_song/summary/skipped files")
    parser.add_argument("--plots", type=int, default=None, help="songs to plot (default: the checkpoint's n_plots)")
    args = parser.parse_args(argv)
    start_logging(args.quiet)
    try:
        model, config = load_tuned_model(args.model, args.tuning)
        if args.plots is not None:
            config["eval"] = {**config["eval"], "n_plots": args.plots}
        _, summary, skipped = evaluate_song_list(model, config, args.songs, args.out_dir,
                                                 plot_dir=args.out_dir / "plots", progress=not args.quiet)
    except (ManifestError, ValueError) as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
    sys.stdout.write(summary_markdown(summary) + "\n")
    log.info("scored %d songs, skipped %d; results in %s", int(summary["n_songs"].max()), len(skipped), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
