"""Benchmark of stage 02 against plain ``librosa.load``, measured in the same run.

    python benchmarks/bench_features.py                         # installed Debian soundtracks
    python benchmarks/bench_features.py --tracks 20 --jobs 2 PATH ...

Prints, for the same full-length songs:

* ``librosa.load`` (decode + resample to 22050 Hz), the baseline, as x real time on one core;
* songfeel's per-track work (hash, decode, resample, log-mel, MFCC, write), single process,
  as x real time on one core, and its ratio to the baseline;
* the whole stage with ``--jobs`` workers (already started, as in a long run), as x real
  time overall and per core;
* the peak RSS of the stage for a few tracks and for all of them, which must not grow
  with the number of tracks.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa
import pandas as pd
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
#: Stage 02's front end and store options.
CONF = REPO / "conf/features/logmel.yaml"

from songfeel.datasets import soundtracks  # noqa: E402
from songfeel.features import FeatureConfig  # noqa: E402
from songfeel.store import extract_track, write_store  # noqa: E402

log = logging.getLogger("bench_features")

PEAK_RSS_RUN = """
import json, resource, sys, pandas as pd
from omegaconf import OmegaConf
from songfeel.features import FeatureConfig
from songfeel.store import write_store
conf = OmegaConf.load(sys.argv[3])
rows = pd.read_json(sys.argv[1])
write_store(rows, sys.argv[2], FeatureConfig.from_mapping(conf), n_jobs=1, min_seconds=conf.min_seconds,
            dtype=conf.dtype, backend=conf.backend, dask_address=conf.dask_address)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def default_tracks(min_seconds: float) -> list[Path]:
    """Full-length songs of the installed Debian soundtrack packages, deduplicated."""
    files, _ = soundtracks.find_soundtrack_files(soundtracks.PACKAGES)
    kept, _ = soundtracks.deduplicate([path for _, path in files])
    return [p for p in kept if librosa.get_duration(path=p) >= min_seconds]


def time_librosa(paths: list[Path], sample_rate: int) -> tuple[float, float]:
    """Seconds spent in ``librosa.load`` and seconds of audio loaded."""
    spent = audio = 0.0
    for path in paths:
        started = time.perf_counter()
        samples, _ = librosa.load(path, sr=sample_rate, mono=True)
        spent += time.perf_counter() - started
        audio += len(samples) / sample_rate
    return spent, audio


def time_songfeel(paths: list[Path], cfg: FeatureConfig, work: Path) -> tuple[float, float]:
    """Seconds spent in :func:`extract_track` (one process) and seconds of audio."""
    spent = audio = 0.0
    for i, path in enumerate(paths):
        started = time.perf_counter()
        status = extract_track(f"bench:{i}", str(path), cfg, "float32", work, 0.0)
        spent += time.perf_counter() - started
        audio += status["seconds"]
    return spent, audio


def peak_rss(paths: list[Path], work: Path) -> float:
    """Peak RSS (MiB) of a fresh process running stage 02 on ``paths`` with one worker."""
    rows = pd.DataFrame({"track_id": [f"bench:{i}" for i in range(len(paths))], "path": [str(p) for p in paths]})
    rows_file = work / f"rows-{len(paths)}.json"
    rows.to_json(rows_file)
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_RUN, str(rows_file), str(work / f"rss-{len(paths)}.h5"),
                          str(CONF)], check=True, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="audio files (default: installed soundtracks)")
    parser.add_argument("--tracks", type=int, default=12, help="songs to time")
    parser.add_argument("--jobs", type=int, default=2, help="workers for the parallel run")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shortest song used, s")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    paths = args.paths or default_tracks(args.min_seconds)
    if not paths:
        sys.exit("no songs: install a soundtrack package (see docs/configuration.md, 'Datasets') or pass files")
    paths = paths[: args.tracks]
    conf = OmegaConf.load(CONF)
    cfg = FeatureConfig.from_mapping(conf)
    options = {"min_seconds": conf.min_seconds, "dtype": conf.dtype, "backend": conf.backend,
               "dask_address": conf.dask_address}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        time_librosa(paths[:1], cfg.sample_rate)  # warm up numba and the resampler
        base_spent, audio = time_librosa(paths, cfg.sample_rate)
        (work / "parts").mkdir()
        ours_spent, _ = time_songfeel(paths, cfg, work / "parts")
        rows = pd.DataFrame({"track_id": [f"bench:{i}" for i in range(len(paths))], "path": [str(p) for p in paths]})
        # loky reuses its workers: start them (and their imports) outside the timed run.
        write_store(rows.head(args.jobs), work / "warm-up.h5", cfg, n_jobs=args.jobs, **options)
        started = time.perf_counter()
        write_store(rows, work / "parallel.h5", cfg, n_jobs=args.jobs, **options)
        parallel_spent = time.perf_counter() - started
        few = max(2, len(paths) // 6)
        rss_few, rss_all = peak_rss(paths[:few], work), peak_rss(paths, work)
    print(f"{len(paths)} songs, {audio / 60:.1f} min of audio, in the same run:")
    print(f"  librosa.load (baseline)    {audio / base_spent:7.0f} x real time, 1 core")
    print(f"  songfeel stage 02 work     {audio / ours_spent:7.0f} x real time, 1 core "
          f"({base_spent / ours_spent:.2f} x the baseline's speed)")
    print(f"  stage 02, {args.jobs} workers        {audio / parallel_spent:7.0f} x real time overall, "
          f"{audio / parallel_spent / args.jobs:.0f} per core (workers started; merge included)")
    print(f"  peak RSS, 1 worker         {rss_few:7.0f} MiB for {few} songs, {rss_all:.0f} MiB for {len(paths)}")


if __name__ == "__main__":
    main()
