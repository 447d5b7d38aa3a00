"""Benchmark: the four musicnn models, and their concatenation, as plain whole-song embedders beside
MECOMP's model, on a soundtrack split's test triplets and retrieval, in one run.

    python benchmarks/bench_musicnn_models.py                                  # experiment=soundtracks
    python benchmarks/bench_musicnn_models.py --data data/soundtracks_rotated  # the rotated split

Issue 22 asks whether a distilled student can beat MECOMP's model by 5 points of 2-way accuracy.
A student learns what its teacher knows, so this measures which musicnn model (Pons & Serra,
ISMIR 2019 LBD; PyPI musicnn 0.1.0) knows most about these soundtracks: ``MTT_vgg`` (the teacher
of ``conf/teacher/musicnn.yaml``), ``MSD_vgg``, ``MTT_musicnn``, ``MSD_musicnn``, and ``musicnn-all``,
the four z-scored song vectors side by side.

Each model runs through the teacher stage's own code (:func:`songfeel.teacher.stage.write_teacher_store`:
loudness normalised to -14 LUFS, float32 log-mel, a 3 s patch every 1.5 s) on the test songs and a
seeded sample of training songs (``--train-songs``), into ``<data>/cache/musicnn_models/<model>.h5``
(incremental: a rerun computes only what is missing). The outputs are tags + pool5 for the vgg
models and tags + penultimate for the musicnn ones. Each song is the mean of its patches' outputs,
z-scored with the sampled training songs' patches (:func:`songfeel.teacher.targets.teacher_song_vectors`).

Writes ``--out`` (default ``results/<split>/musicnn_models.csv``): 2-way accuracy with its
cluster-bootstrap 95 % CI and the paired difference to MECOMP's model, precision@5 and its paired
difference, and each teacher's × real time per core as its stage measured it (decoding included).
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

from songfeel import benchmark  # noqa: E402
from songfeel.baselines.mecomp import mecomp_embeddings  # noqa: E402
from songfeel.teacher.stage import write_teacher_store  # noqa: E402
from songfeel.teacher.targets import teacher_cost, teacher_song_vectors  # noqa: E402

log = logging.getLogger("bench_musicnn_models")

#: The outputs each model is measured with: its tags and the layer below them.
OUTPUTS = {"MTT_vgg": ["tags", "pool5"], "MSD_vgg": ["tags", "pool5"],
           "MTT_musicnn": ["tags", "penultimate"], "MSD_musicnn": ["tags", "penultimate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data/soundtracks")
    parser.add_argument("--features", type=Path, default=REPO / "data/soundtracks/features.h5")
    parser.add_argument("--mecomp", type=Path, default=REPO / "../shared/baselines/mecomp_audio_embedding_model.onnx")
    parser.add_argument("--models", nargs="+", default=list(OUTPUTS), choices=list(OUTPUTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--train-songs", type=int, default=60,
                        help="training songs (seeded sample) whose patches z-score each model's outputs")
    parser.add_argument("--n-jobs", type=int, default=1, help="teacher worker processes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    held_out = benchmark.heldout_set(args.data, args.features)
    tracks, labels, n_frames, triplets = held_out.tracks, held_out.labels, held_out.n_frames, held_out.triplets
    test_ids = held_out.test_ids
    sample = held_out.train_sample(args.train_songs)
    subset = tracks[tracks["track_id"].isin(set(sample) | set(test_ids))]
    cache = args.data / "cache" / "musicnn_models"
    methods, speed, songs = [], {}, {}
    teacher = OmegaConf.to_container(OmegaConf.load(REPO / "conf/teacher/musicnn.yaml"))  # hop, loudness, min_seconds
    for model in args.models:
        store_path = cache / f"{model}.h5"
        cfg = {**teacher, "model": model, "outputs": OUTPUTS[model]}
        skipped, _ = write_teacher_store(subset, store_path, cfg, n_jobs=args.n_jobs, min_seconds=cfg["min_seconds"])
        if len(skipped):
            log.warning("%s skipped %d songs: %s", model, len(skipped), skipped.to_dict("records"))
        songs[model] = teacher_song_vectors(store_path, test_ids, sample)
        speed[model] = teacher_cost(store_path)["x_real_time_per_core"]
        methods.append(benchmark.whole_song_method(model, "baseline", songs[model], n_frames))
    if len(songs) > 1:
        common = sorted(set.intersection(*(set(v.index) for v in songs.values())))
        joined = pd.concat([v.loc[common].set_axis([f"{m}_{c}" for c in v.columns], axis=1)
                            for m, v in songs.items()], axis=1)
        methods.append(benchmark.whole_song_method("musicnn-all", "baseline", joined, n_frames))
    paths = dict(zip(tracks["track_id"], tracks["path"]))
    mecomp, failed = mecomp_embeddings({t: paths[t] for t in test_ids}, args.mecomp, intra_op_threads=1)
    methods.append(benchmark.whole_song_method("mecomp", "baseline", mecomp, n_frames))
    scores, _ = benchmark.score_triplets(methods, triplets, args.resamples, 0, reference="mecomp")
    retrieval = benchmark.retrieval_table(methods, {"test": test_ids}, n_frames, labels, 5, reference="mecomp",
                                          n_resamples=args.resamples)
    out = scores.merge(retrieval[["method", "n_songs", "precision_at_k", "precision_at_k_diff",
                                  "precision_at_k_diff_ci_low", "precision_at_k_diff_ci_high"]], on="method")
    out["x_real_time_per_core"] = out["method"].map(speed)
    destination = args.out or REPO / "results" / args.data.name / "musicnn_models.csv"
    destination.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(destination, index=False)
    for row in out.itertuples():
        log.info("%-12s 2-way %.3f [%.3f, %.3f] vs MECOMP %+.3f [%+.3f, %+.3f]; precision@5 %.3f vs MECOMP %+.3f "
                 "[%+.3f, %+.3f]", row.method, row.accuracy, row.ci_low, row.ci_high, row.diff_vs_reference,
                 row.diff_ci_low, row.diff_ci_high, row.precision_at_k, row.precision_at_k_diff,
                 row.precision_at_k_diff_ci_low, row.precision_at_k_diff_ci_high)
    log.info("wrote %s (%d test triplets, %d test songs)", destination, int(out["n_triplets"].iloc[0]),
             int(out["n_songs"].iloc[0]))


if __name__ == "__main__":
    main()
