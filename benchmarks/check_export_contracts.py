"""Check the exported model's contracts on real full-length songs: torch parity, mask-exact padding,
streaming equal to whole-song, and tract import. Exit status 1 when one fails.

    python benchmarks/check_export_contracts.py --run data/soundtracks/runs/chunked-gru-small-distill \
        --onnx /tmp/st_export/model.onnx SONG ...

The tests hold the same contracts for every window x head on the demo tracks with random weights
(tests/test_export.py, tests/test_stream.py); this script checks one trained student, e.g. the
winner of a soundtracks run, on the songs given (default: 3 installed Debian soundtrack songs).
Tolerances are the tests': 1e-4 (torch, tract, streaming) and 1e-5 (padding).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_native import default_tracks  # noqa: E402

from songfeel.audio import load_audio  # noqa: E402
from songfeel.export.onnx import build_audio_model  # noqa: E402
from songfeel.stream import StreamingEmbedder  # noqa: E402

log = logging.getLogger("check_export_contracts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--run", type=Path, required=True, help="the run folder (its model.pt)")
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--tracks", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import tract

    model = build_audio_model(args.run / "model.pt").eval()
    session = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    runnable = tract.onnx().load(str(args.onnx)).into_model().into_runnable()
    songs = [load_audio(p) for p in (args.paths or default_tracks())[: args.tracks]]
    worst = {"torch": 0.0, "tract": 0.0, "streaming": 0.0, "padding": 0.0}
    alone = []
    for song in songs:
        audio = np.ascontiguousarray(song[None])
        onnx_out = session.run(["embedding"], {"audio": audio})[0]
        alone.append(onnx_out[0])
        with torch.no_grad():
            worst["torch"] = max(worst["torch"], float(np.abs(model(torch.from_numpy(audio)).numpy() - onnx_out).max()))
        worst["tract"] = max(worst["tract"], float(np.abs(runnable.run([audio])[0].to_numpy() - onnx_out).max()))
        stream = StreamingEmbedder(model)
        rng = np.random.default_rng(0)
        start = 0
        while start < song.shape[0]:
            step = int(rng.integers(1, 60_000))
            stream.push(song[start:start + step])
            start += step
        worst["streaming"] = max(worst["streaming"], float(np.abs(stream.finish() - onnx_out[0]).max()))
    batch = np.zeros((len(songs), max(s.shape[0] for s in songs)), dtype=np.float32)
    for row, song in zip(batch, songs):
        row[: song.shape[0]] = song
    worst["padding"] = float(np.abs(session.run(["embedding"], {"audio": batch})[0] - np.stack(alone)).max())
    tolerance = {"torch": 1e-4, "tract": 1e-4, "streaming": 1e-4, "padding": 1e-5}
    failed = [k for k in worst if not worst[k] <= tolerance[k]]
    seconds = sum(s.shape[0] for s in songs) / 22050
    for key, value in worst.items():
        log.info("%-9s max |difference| %.2e (tolerance %.0e) on %d songs, %.0f s: %s", key, value, tolerance[key],
                 len(songs), seconds, "FAILED" if key in failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
