"""Benchmark: the teacher stage's throughput (musicnn) against MECOMP's model, on one core, in the same run.

    python benchmarks/bench_teacher.py                         # installed Debian soundtracks (or the demo)
    python benchmarks/bench_teacher.py --tracks 6 --model MTT_musicnn PATH ...

For each song, alternately: the teacher's per-track work (decode at 16 kHz, BS.1770
loudness, float32 log-mel, every 3 s patch every ``--hop`` seconds through the TensorFlow
graph on one thread) and MECOMP's (decode at 22050 Hz, its ONNX model on one thread).
Prints each one's × real time per core (seconds of audio per second, decoding included)
and the teacher's ratio to MECOMP's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_native import default_tracks  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio  # noqa: E402
from songfeel.baselines.mecomp import MecompModel  # noqa: E402
from songfeel.teacher.musicnn import (  # noqa: E402
    TEACHER_HOP_LENGTH,
    TEACHER_SAMPLE_RATE,
    MusicnnTeacher,
    normalise_loudness,
    patch_starts,
    teacher_log_mel,
)

log = logging.getLogger("bench_teacher")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="audio files (default: installed soundtracks)")
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--model", default="MTT_vgg")
    parser.add_argument("--hop", type=float, default=1.5, help="patch hop, seconds (conf/teacher: 1.5)")
    parser.add_argument("--mecomp-onnx", type=Path,
                        default=REPO.parent / "shared/baselines/mecomp_audio_embedding_model.onnx")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = (args.paths or default_tracks())[: args.tracks]
    outputs = ("tags", "pool5") if "vgg" in args.model else ("tags", "penultimate")
    teacher = MusicnnTeacher(args.model, outputs, num_threads=1)
    mecomp = MecompModel(args.mecomp_onnx, intra_op_threads=1)
    hop_frames = round(args.hop * TEACHER_SAMPLE_RATE / TEACHER_HOP_LENGTH)
    target_lufs = float(OmegaConf.load(REPO / "conf/teacher/musicnn.yaml").target_lufs)
    spent = {"teacher": 0.0, "mecomp": 0.0}
    audio_seconds = 0.0
    for path in files:
        started = time.perf_counter()
        samples = load_audio(path, TEACHER_SAMPLE_RATE)
        log_mel = teacher_log_mel(normalise_loudness(samples, TEACHER_SAMPLE_RATE, target_lufs))
        teacher.patches(log_mel, patch_starts(log_mel.shape[0], hop_frames))
        spent["teacher"] += time.perf_counter() - started
        started = time.perf_counter()
        mecomp.embed(load_audio(path, MECOMP_SAMPLE_RATE))
        spent["mecomp"] += time.perf_counter() - started
        audio_seconds += samples.shape[0] / TEACHER_SAMPLE_RATE
    speed = {name: audio_seconds / seconds for name, seconds in spent.items()}
    log.info("%d songs, %.1f min of audio, one core each, same run: teacher %s (hop %.1f s) %.0f x real time, "
             "MECOMP's model %.0f x real time; teacher / MECOMP = %.3f", len(files), audio_seconds / 60, args.model,
             args.hop, speed["teacher"], speed["mecomp"], speed["teacher"] / speed["mecomp"])


if __name__ == "__main__":
    main()
