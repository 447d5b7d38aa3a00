"""Benchmark: what isolating bliss costs on a CPU that runs it, against the plain joblib run, in the same run.

    python benchmarks/bench_native.py                      # installed Debian soundtracks (or the demo)
    python benchmarks/bench_native.py --tracks 8 --jobs 2 PATH ...

Before issue 21, stage 05 analysed files with ``joblib.Parallel(n_jobs)`` over
:func:`songfeel.baselines.bliss.bliss_analyse`, so a SIGILL or SIGSEGV in bliss killed the stage.
Now :func:`songfeel.baselines.bliss.bliss_features` probes bliss once in a subprocess and runs the
files in loky workers whose death is caught. On the same files, alternating them
``--repeats`` times (no cache), this prints the median seconds of:

* plain, cold: joblib's worker pool started for the call, as in stage 05, where bliss is
  the first parallel work of the process (the baseline);
* plain, warm: joblib's pool already running (a lower bound no stage 05 run had);
* isolated: the probe plus a pool of its own;

their ratios to the baseline (1.00 is no cost), and the probe's own time.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel import native  # noqa: E402
from songfeel.baselines.bliss import (  # noqa: E402
    BLISS,
    bliss_analyse,
    bliss_available,
    bliss_features,
)
from songfeel.datasets import soundtracks  # noqa: E402

log = logging.getLogger("bench_native")


def default_tracks(min_seconds: float = 60.0) -> list[Path]:
    """Songs of at least ``min_seconds`` of the installed Debian soundtrack packages, else the demo tracks."""
    import librosa

    files, _ = soundtracks.find_soundtrack_files(soundtracks.PACKAGES)
    if files:
        kept, _ = soundtracks.deduplicate([path for _, path in files])
        return [p for p in sorted(kept) if librosa.get_duration(path=p) >= min_seconds]
    import immich_memories_music

    return sorted(Path(immich_memories_music.__file__).parent.glob("tracks/*/*.opus"))


def plain(paths: dict[str, str], n_jobs: int, cold: bool) -> float:
    """Seconds of the pre-isolation run: joblib over bliss_analyse (in this process for n_jobs=1); with
    ``cold``, joblib's reusable worker pool is shut down first, so the call starts its workers."""
    if cold:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    started = time.perf_counter()
    results = Parallel(n_jobs=n_jobs)(delayed(bliss_analyse)(t, p) for t, p in paths.items())
    assert all(not r["error"] for r in results), [r["error"] for r in results if r["error"]]
    return time.perf_counter() - started


def isolated(paths: dict[str, str], n_jobs: int) -> float:
    """Seconds of bliss_features: the probe (once per process; forced again here) plus the workers."""
    native._probe_results.clear()
    started = time.perf_counter()
    features, skipped = bliss_features(paths, n_jobs=n_jobs)
    assert skipped.empty and len(features) == len(paths), skipped
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="audio files (default: installed soundtracks)")
    parser.add_argument("--tracks", type=int, default=8, help="files analysed per run")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (stage 05 uses eval.num_threads)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cause = bliss_available()
    if cause is not None:
        sys.exit(f"bliss cannot run on this CPU, so there is nothing to compare: {cause}")
    files = (args.paths or default_tracks())[: args.tracks]
    paths = {f"{i:02d}": str(p) for i, p in enumerate(files)}
    plain(paths, args.jobs, cold=False)  # warm-up: the files in the page cache
    times: dict[str, list[float]] = {"cold": [], "warm": [], "isolated": []}
    for _ in range(args.repeats):
        times["cold"].append(plain(paths, args.jobs, cold=True))
        times["warm"].append(plain(paths, args.jobs, cold=False))
        times["isolated"].append(isolated(paths, args.jobs))
    probes = []
    for _ in range(5):
        started = time.perf_counter()
        assert native.probe(BLISS, refresh=True) is None
        probes.append(time.perf_counter() - started)
    cold, warm, isolated_s = (statistics.median(times[k]) for k in ("cold", "warm", "isolated"))
    log.info("%d files, %d jobs, median of %d alternating runs: plain joblib cold %.2f s (the baseline), warm "
             "%.2f s (ratio %.3f), isolated %.2f s (ratio %.3f); probe alone %.3f s (median of 5)", len(paths),
             args.jobs, args.repeats, cold, warm, warm / cold, isolated_s, isolated_s / cold, statistics.median(probes))


if __name__ == "__main__":
    main()
