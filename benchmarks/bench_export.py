"""Benchmark of the exported model against MECOMP's, as MECOMP runs them: ONNX Runtime, one thread, whole songs.

    python benchmarks/bench_export.py                                   # results/model.onnx on installed soundtracks
    python benchmarks/bench_export.py --onnx results/soundtracks/model.onnx --tracks 8 --repeats 3
    python benchmarks/bench_export.py --check PATH ...                  # your own full-length songs; exit 1 if short

Decodes N full-length songs to mono at 22050 Hz (not timed), then times, on one
core and interleaved song by song (:func:`songfeel.export.cost.embedding_cost`), stage
06's ``model.onnx``, its fp16 and int8 variants when they lie beside it, and
MECOMP's ONNX model, each in ONNX Runtime with one intra-op thread and one song
per call. Logs the table (× real time, ratio to MECOMP's model, file size) and
the issue's target: at least 1,000× real time, i.e. at least 3.6× MECOMP's
model (which this machine measured at about 276× real time) in the same run. The
ratio decides, since a busy machine slows both models alike; without MECOMP's
model, the absolute speed does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio  # noqa: E402
from songfeel.baselines.mecomp import fetch_mecomp_model  # noqa: E402
from songfeel.export.cost import MECOMP, embedding_cost  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_cost import add_song_arguments, default_tracks  # noqa: E402

log = logging.getLogger("bench_export")

#: The issue's targets: × real time on one thread, and the ratio to MECOMP's model in the same run.
MIN_REAL_TIME, MIN_RATIO = 1000.0, 3.6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_song_arguments(parser)
    parser.add_argument("--onnx", type=Path, default=REPO / "results/model.onnx", help="stage 06's model")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the songs")
    parser.add_argument("--check", action="store_true", help="exit 1 when model.onnx misses a target")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.onnx.is_file():
        log.error("%s not found: run stage 06 (dvc repro) first", args.onnx)
        return 2
    paths = (args.paths or default_tracks(args.min_seconds))[: args.tracks]
    if not paths:
        log.error("no songs: install a soundtrack package (see docs/configuration.md, 'Datasets') or pass files")
        return 2
    if args.fetch_mecomp:
        fetch_mecomp_model(args.mecomp_onnx)
    mecomp = args.mecomp_onnx if args.mecomp_onnx.is_file() else None
    if mecomp is None:
        log.warning("%s not found: no ratio to MECOMP's model (use --fetch-mecomp)", args.mecomp_onnx)
    name = args.onnx.name
    onnx_models = {name: args.onnx}
    for suffix in ("fp16", "int8"):
        variant = args.onnx.with_name(f"{args.onnx.stem}.{suffix}.onnx")
        if variant.is_file():
            onnx_models[variant.name] = variant
    keys = [f"{i:02d}:{p.name}" for i, p in enumerate(paths)]
    audio = {key: load_audio(path, sample_rate=MECOMP_SAMPLE_RATE) for key, path in zip(keys, paths)}
    table = embedding_cost({}, audio, MECOMP_SAMPLE_RATE, mecomp_onnx=mecomp, repeats=args.repeats, mfcc=False,
                           export=False, onnx_models=onnx_models)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        log.info("%d songs, %.1f min of audio, %d passes, in the same run, one thread:\n%s", len(paths),
                 table["audio_seconds"].iloc[0] / 60 / args.repeats, args.repeats, table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
        log.info("wrote %s", args.out)
    rows = table.set_index("method")
    speed, ratio = rows.loc[name, "x_real_time"], rows.loc[name, "ratio_vs_mecomp"]
    # The ratio is the target (the issue's "at least 1,000x, i.e. at least 3.6x MECOMP's model in the same
    # run"): a busy machine slows both alike. Without MECOMP's model, only the absolute speed is left.
    met = ratio >= MIN_RATIO if mecomp is not None else speed >= MIN_REAL_TIME
    log.info("%s: %.0f x real time (target %.0f), %.2f x MECOMP's model at %.0f x (target %.1f): %s", name, speed,
             MIN_REAL_TIME, ratio, rows["x_real_time"].get(MECOMP, float("nan")), MIN_RATIO,
             "met" if met else "MISSED")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
