"""Benchmark of embedding cost: every trained variant against MECOMP's model, measured in the same run.

    python benchmarks/bench_cost.py                                  # installed Debian soundtracks
    python benchmarks/bench_cost.py --tracks 8 --repeats 2 PATH ...  # your own full-length songs

Decodes N full-length songs to mono at 22050 Hz (not timed), then times, on one
core and interleaved song by song (:func:`songfeel.export.cost.embedding_cost`): every
checkpoint ``<runs-dir>/*/model.pt`` behind its in-graph log-mel front end,
MECOMP's ONNX model (the baseline of the ratio), bliss-rs on the files (its time
includes decoding) and MFCC statistics. Logs the table (× real time, ratio to
MECOMP, parameters, fp32 and exported ONNX sizes) and writes it with ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio  # noqa: E402
from songfeel.baselines.bliss import bliss_available  # noqa: E402
from songfeel.baselines.mecomp import fetch_mecomp_model  # noqa: E402
from songfeel.datasets import soundtracks  # noqa: E402
from songfeel.evaluate import list_runs  # noqa: E402
from songfeel.export.cost import embedding_cost  # noqa: E402
from songfeel.export.onnx import build_audio_model  # noqa: E402
from songfeel.features import FeatureConfig  # noqa: E402

log = logging.getLogger("bench_cost")


def default_tracks(min_seconds: float) -> list[Path]:
    """Full-length songs of the installed Debian soundtrack packages, deduplicated."""
    import soundfile as sf

    files, _ = soundtracks.find_soundtrack_files(soundtracks.PACKAGES)
    kept, _ = soundtracks.deduplicate([path for _, path in files])
    return [p for p in kept if sf.info(p).duration >= min_seconds]


def add_song_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments bench_cost.py and bench_export.py share: songs, MECOMP's model and the output."""
    parser.add_argument("paths", nargs="*", type=Path, help="audio files (default: installed soundtracks)")
    parser.add_argument("--tracks", type=int, default=8, help="songs to time (N)")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shortest default song used, s")
    parser.add_argument("--mecomp-onnx", type=Path,
                        default=REPO.parent / "shared/baselines/mecomp_audio_embedding_model.onnx",
                        help="MECOMP's model, the baseline")
    parser.add_argument("--fetch-mecomp", action="store_true", help="download MECOMP's model if it is missing")
    parser.add_argument("--out", type=Path, help="also write the table here (CSV)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_song_arguments(parser)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "data/runs", help="trained runs (*/model.pt)")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the songs")
    parser.add_argument("--no-bliss", action="store_true", help="leave bliss out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = args.paths or default_tracks(args.min_seconds)
    if not paths:
        sys.exit("no songs: install a soundtrack package (see docs/configuration.md, 'Datasets') or pass files")
    paths = paths[: args.tracks]
    if args.fetch_mecomp:
        fetch_mecomp_model(args.mecomp_onnx)
    mecomp = args.mecomp_onnx if args.mecomp_onnx.is_file() else None
    if mecomp is None:
        log.warning("%s not found: no MECOMP row, so no ratio (use --fetch-mecomp)", args.mecomp_onnx)
    models = {run.name: build_audio_model(run / "model.pt") for run in list_runs(args.runs_dir)}
    keys = [f"{i:02d}:{p.name}" for i, p in enumerate(paths)]
    audio = {key: load_audio(path, sample_rate=MECOMP_SAMPLE_RATE) for key, path in zip(keys, paths)}
    bliss_paths = None if args.no_bliss else dict(zip(keys, paths))
    if bliss_paths is not None and (cause := bliss_available()) is not None:
        log.warning("bliss is not measured on this machine: %s", cause)
        bliss_paths = None
    features = FeatureConfig.from_mapping(OmegaConf.load(REPO / "conf/features/logmel.yaml"))  # the MFCC baseline's
    table = embedding_cost(models, audio, MECOMP_SAMPLE_RATE, mecomp_onnx=mecomp, repeats=args.repeats,
                           bliss_paths=bliss_paths, features=features)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        log.info("%d songs, %.1f min of audio, in the same run, one core:\n%s", len(paths),
                 table["audio_seconds"].iloc[0] / 60 / args.repeats, table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
