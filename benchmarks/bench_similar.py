"""Benchmark: `python -m songfeel.similar`'s end-to-end throughput with songfeel's model against MECOMP's, same run.

    python benchmarks/bench_similar.py --model results/model.onnx      # installed Debian soundtracks (or the demo)

Embeds the same songs with :func:`songfeel.similar.embed_library` (decoding as MECOMP does,
ONNX Runtime on one thread per worker, no cache), once with songfeel's exported model and
once with MECOMP's, alternating ``--repeats`` times, and prints each one's × real time per
core (decoding included) and songfeel's ratio to MECOMP's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_native import default_tracks  # noqa: E402

from songfeel.similar import embed_library  # noqa: E402

log = logging.getLogger("bench_similar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="audio files (default: installed soundtracks)")
    parser.add_argument("--model", type=Path, default=REPO / "results/model.onnx")
    parser.add_argument("--mecomp-onnx", type=Path,
                        default=REPO.parent / "shared/baselines/mecomp_audio_embedding_model.onnx")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1: one core)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = (args.paths or default_tracks())[: args.tracks]
    speeds = {"songfeel": [], "mecomp": []}
    for _ in range(args.repeats):
        for name, model in (("songfeel", args.model), ("mecomp", args.mecomp_onnx)):
            _, skipped, summary = embed_library(files, model, None, n_jobs=args.jobs)
            assert skipped.empty, skipped
            speeds[name].append(summary["audio_seconds"] / summary["seconds"] / args.jobs)
    ours, theirs = statistics.median(speeds["songfeel"]), statistics.median(speeds["mecomp"])
    log.info("%d songs, %d job(s), median of %d alternating runs, decoding included: songfeel %.0f x real time "
             "per core, MECOMP's model %.0f; songfeel / MECOMP = %.2f", len(files), args.jobs, args.repeats, ours,
             theirs, ours / theirs)


if __name__ == "__main__":
    main()
