"""What the segmentation command lines share (``python -m songfeel.segmentation.segment`` and
``python -m songfeel.segmentation.annotated``): the checkpoint and tuning arguments, logging, and
loading SSM-Net with the peak picking stage 05 tuned on the validation medleys."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from songfeel.segmentation.checkpoint import load_ssmnet
from songfeel.segmentation.ssmnet import SSMNet
from songfeel.segmentation.tuning import read_tuning, with_tuned_peaks


def add_model_arguments(parser: argparse.ArgumentParser, out_dir_help: str) -> None:
    """``--model`` (the checkpoint), ``--out-dir``, ``--tuning`` (stage 05's tuning.csv) and ``--quiet``."""
    parser.add_argument("--model", type=Path, required=True, help="SSM-Net checkpoint (04_train_segmentation.py)")
    parser.add_argument("--out-dir", type=Path, required=True, help=out_dir_help)
    parser.add_argument("--tuning", type=Path, default=None,
                        help="stage 05's tuning.csv: pick peaks as tuned on the validation medleys")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")


def start_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def load_tuned_model(model_path: Path, tuning_path: Path | None) -> tuple[SSMNet, dict]:
    """SSM-Net and its config from ``model_path``, with the tuned peak picking of ``tuning_path`` if given.

    Raises:
        ValueError: the checkpoint or the tuning file cannot be read (both named in the message).
    """
    model, config = load_ssmnet(model_path)
    if tuning_path is not None:
        config = with_tuned_peaks(config, read_tuning(tuning_path))
    return model, config
