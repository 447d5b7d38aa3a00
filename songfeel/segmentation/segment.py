"""Segment an audio file with the best method this project has, from the command line.

``python -m songfeel.segmentation.segment AUDIO --model CKPT --out-dir DIR [--tuning TUNING] [--method M]``

The method is SSM-Net (the checkpoint), SSM-Net's novelty fused with Foote's (``fusion``, when the
checkpoint's or the tuning table's ``eval.fusion`` switches it on) or Foote novelty on one of the
checkpoint's Foote features (``foote_mfcc``, ``foote_logmel``). With ``--method auto`` (the default)
and stage 05's tuning table, the command takes the method that scores best on the validation medleys (the table's tuned
mean of trimmed HR.5F and HR3F, :func:`~songfeel.segmentation.tuning.validation_ranking`): on the
soundtracks' full-length medleys that may be Foote on MFCCs rather than SSM-Net. Without a tuning
table, ``auto`` is SSM-Net. The method, and why, is logged and written into the JAMS file's annotator.

Writes, in ``DIR``, ``<stem>.csv`` (columns ``start, end, label``, seconds),
``<stem>.jams`` (namespace ``segment_open``) and ``<stem>.png``
(:func:`~songfeel.segmentation.plots.plot_song`), ``<stem>`` being the audio file's
name without its extension. A file that cannot be decoded, is silent or is too
short, and an unreadable checkpoint, end the command with a one-line message
naming the file and the cause, and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from songfeel.audio import load_audio
from songfeel.errors import AudioError
from songfeel.segmentation.annotations import Segmentation, write_jams
from songfeel.segmentation.cli import (
    add_model_arguments,
    load_tuned_model,
    start_logging,
)
from songfeel.segmentation.config import feature_config
from songfeel.segmentation.infer import (
    PASS_METHODS,
    foote_audio,
    fusion_settings,
    segment_audio,
)
from songfeel.segmentation.plots import plot_song
from songfeel.segmentation.tuning import validation_ranking

log = logging.getLogger(__name__)

#: Columns of the boundary CSV.
CSV_COLUMNS = ("start", "end", "label")

#: Display names of the methods, for plots.
METHOD_NAMES = {"ssmnet": "SSM-Net", "fusion": "SSM-Net (novelty fused with Foote's)", "foote_mfcc": "Foote (MFCC)",
                "foote_logmel": "Foote (log-mel)"}


def write_csv(segmentation: Segmentation, path: str | Path) -> Path:
    """Write one row per segment: ``start, end`` (seconds) and ``label``."""
    path = Path(path)
    table = pd.DataFrame({"start": segmentation.intervals[:, 0], "end": segmentation.intervals[:, 1],
                          "label": segmentation.labels}, columns=list(CSV_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def segment_file(audio_path: str | Path, model, config: dict, out_dir: str | Path,
                 method: str = "ssmnet") -> dict[str, Path]:
    """Decode ``audio_path``, segment it with ``method`` and write the outputs.

    Args:
        audio_path: any file :func:`songfeel.audio.load_audio` decodes.
        model: a trained SSM-Net; ``config`` is its checkpoint's config.
        config: from :func:`~songfeel.segmentation.checkpoint.load_ssmnet` (with tuned peaks, if any).
        out_dir: output folder (created).
        method: ``"ssmnet"`` or ``"fusion"`` (:func:`~songfeel.segmentation.infer.segment_audio`), or
            ``"foote_<feature>"`` (:func:`~songfeel.segmentation.infer.foote_audio`).

    Returns:
        ``{"csv": ..., "jams": ..., "png": ...}``, the paths written.

    Raises:
        AudioError: the file cannot be decoded, is silent or is shorter than one patch
            (its path and the cause are in the message).
        ValueError: an unknown ``method``.
    """
    if method not in PASS_METHODS and not method.startswith("foote_"):
        raise ValueError(f"unknown segmentation method {method!r}; expected ssmnet, fusion or foote_<feature>")
    audio_path, out_dir = Path(audio_path), Path(out_dir)
    features = feature_config(config)
    audio = load_audio(audio_path, features.sample_rate)
    if features.n_patches(features.n_steps(len(audio))) == 0:
        raise AudioError(audio_path, f"lasts {len(audio) / features.sample_rate:.2f} s, shorter than one "
                                     f"{features.patch_seconds:.2f} s patch")
    try:
        if method in PASS_METHODS:
            segmentation, details = segment_audio(model, audio, features.sample_rate, config, method)
        else:
            segmentation, details = foote_audio(audio, features.sample_rate, config, method.removeprefix("foote_"))
    except ValueError as exc:
        raise AudioError(audio_path, str(exc)) from exc
    segmentation = Segmentation(segmentation.intervals, segmentation.labels, segmentation.duration, str(audio_path))
    stem = audio_path.stem
    written = {
        "csv": write_csv(segmentation, out_dir / f"{stem}.csv"),
        "jams": write_jams(segmentation, out_dir / f"{stem}.jams", title=stem, annotator=f"songfeel.{method}"),
        "png": plot_song(details, None, out_dir / f"{stem}.png", title=stem,
                         method=METHOD_NAMES.get(method, method)),
    }
    log.info("%s: %d segments (%s), boundaries at %s s", audio_path, segmentation.n_segments, method,
             ", ".join(f"{b:.2f}" for b in segmentation.boundaries()) or "none")
    return written


def choose_method(method: str, config: dict, tuning_path: Path | None) -> tuple[str, str]:
    """The method to segment with, and why.

    ``auto`` is the method with the best validation score in ``tuning_path`` among those the checkpoint
    can run (``ssmnet``; ``fusion`` when ``eval.fusion`` is switched on, by the checkpoint or the tuning
    table; ``foote_<feature>`` of its ``eval.foote.features``), or ``ssmnet`` without a tuning table.
    Any other ``method`` is taken as asked, if the checkpoint can run it.

    Returns:
        ``(method, reason)``, the reason a sentence for the log.

    Raises:
        ValueError: the checkpoint cannot run ``method``, or the tuning table is unreadable or scores
            none of the methods the checkpoint can run.
    """
    runnable = ["ssmnet", *(["fusion"] if fusion_settings(config) is not None else []),
                *(f"foote_{feature}" for feature in config["eval"]["foote"]["features"])]
    if method != "auto":
        if method not in runnable:
            raise ValueError(f"method {method!r} is not one of {runnable} (the checkpoint's)")
        return method, "asked for with --method"
    if tuning_path is None:
        return "ssmnet", "no --tuning table to rank the methods on validation medleys"
    ranking = validation_ranking(tuning_path)
    ranking = ranking[ranking.index.isin(runnable)]
    if ranking.empty:
        raise ValueError(f"{tuning_path}: scores none of the methods {runnable}")
    scores = ", ".join(f"{name} {value:.3f}" for name, value in ranking.items())
    return str(ranking.index[0]), f"best on the validation medleys of {tuning_path} (tuned mean HR: {scores})"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0, or 1 on a bad input file or checkpoint)."""
    parser = argparse.ArgumentParser(prog="python -m songfeel.segmentation.segment",
                                     description="Segment a song into labelled sections (SSM-Net or Foote).")
    parser.add_argument("audio", type=Path, help="audio file (WAV, FLAC, Ogg, Opus, MP3, or anything FFmpeg reads)")
    add_model_arguments(parser, "folder for <stem>.csv, .jams and .png")
    parser.add_argument("--method", default="auto",
                        help="auto (the best on validation in --tuning; SSM-Net without it), ssmnet, fusion "
                             "(SSM-Net's novelty fused with Foote's), foote_mfcc or foote_logmel")
    args = parser.parse_args(argv)
    start_logging(args.quiet)
    try:
        model, config = load_tuned_model(args.model, args.tuning)
        method, reason = choose_method(args.method, config, args.tuning)
        log.info("method: %s (%s)", method, reason)
        written = segment_file(args.audio, model, config, args.out_dir, method)
    except (AudioError, ValueError) as exc:
        # Both name their file (the audio or the checkpoint) and the cause.
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
    for kind, path in written.items():
        log.info("wrote %s %s", kind, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
