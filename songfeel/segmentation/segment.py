"""Segment an audio file with a trained SSM-Net, from the command line.

``python -m songfeel.segmentation.segment AUDIO --model CKPT --out-dir DIR``

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
from songfeel.segmentation.infer import segment_audio
from songfeel.segmentation.plots import plot_song

log = logging.getLogger(__name__)

#: Columns of the boundary CSV.
CSV_COLUMNS = ("start", "end", "label")


def write_csv(segmentation: Segmentation, path: str | Path) -> Path:
    """Write one row per segment: ``start, end`` (seconds) and ``label``."""
    path = Path(path)
    table = pd.DataFrame({"start": segmentation.intervals[:, 0], "end": segmentation.intervals[:, 1],
                          "label": segmentation.labels}, columns=list(CSV_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def segment_file(audio_path: str | Path, model, config: dict, out_dir: str | Path) -> dict[str, Path]:
    """Decode ``audio_path``, segment it (:func:`~songfeel.segmentation.infer.segment_audio`) and write the outputs.

    Args:
        audio_path: any file :func:`songfeel.audio.load_audio` decodes.
        model: a trained SSM-Net; ``config`` is its checkpoint's config.
        config: from :func:`~songfeel.segmentation.checkpoint.load_ssmnet`.
        out_dir: output folder (created).

    Returns:
        ``{"csv": ..., "jams": ..., "png": ...}``, the paths written.

    Raises:
        AudioError: the file cannot be decoded, is silent or is shorter than one patch
            (its path and the cause are in the message).
    """
    audio_path, out_dir = Path(audio_path), Path(out_dir)
    features = feature_config(config)
    audio = load_audio(audio_path, features.sample_rate)
    if features.n_patches(features.n_steps(len(audio))) == 0:
        raise AudioError(audio_path, f"lasts {len(audio) / features.sample_rate:.2f} s, shorter than one "
                                     f"{features.patch_seconds:.2f} s patch")
    try:
        segmentation, details = segment_audio(model, audio, features.sample_rate, config)
    except ValueError as exc:
        raise AudioError(audio_path, str(exc)) from exc
    segmentation = Segmentation(segmentation.intervals, segmentation.labels, segmentation.duration, str(audio_path))
    stem = audio_path.stem
    written = {
        "csv": write_csv(segmentation, out_dir / f"{stem}.csv"),
        "jams": write_jams(segmentation, out_dir / f"{stem}.jams", title=stem, annotator="songfeel.ssmnet"),
        "png": plot_song(details, None, out_dir / f"{stem}.png", title=stem),
    }
    log.info("%s: %d segments, boundaries at %s s", audio_path, segmentation.n_segments,
             ", ".join(f"{b:.2f}" for b in segmentation.boundaries()) or "none")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0, or 1 on a bad input file or checkpoint)."""
    parser = argparse.ArgumentParser(prog="python -m songfeel.segmentation.segment",
                                     description="Segment a song into labelled sections with a trained SSM-Net.")
    parser.add_argument("audio", type=Path, help="audio file (WAV, FLAC, Ogg, Opus, MP3, or anything FFmpeg reads)")
    add_model_arguments(parser, "folder for <stem>.csv, .jams and .png")
    args = parser.parse_args(argv)
    start_logging(args.quiet)
    try:
        model, config = load_tuned_model(args.model, args.tuning)
        written = segment_file(args.audio, model, config, args.out_dir)
    except (AudioError, ValueError) as exc:
        # Both name their file (the audio or the checkpoint) and the cause.
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
    for kind, path in written.items():
        log.info("wrote %s %s", kind, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
