"""Export an embedder as MECOMP's ONNX model, and check it against torch.

MECOMP's contract (``[analysis] model_path``, loaded with ONNX Runtime):
input ``audio`` float32 (batch, n_samples), mono at 22050 Hz, the whole song;
output ``embedding`` float32 (batch, 32), unit L2 norm. The log-mel front end
is inside the graph, so MECOMP hands the model raw samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from songfeel.audio import load_audio
from songfeel.errors import ExportParityError
from songfeel.features import FeatureConfig
from songfeel.models.embedder import AudioEmbedder, load_checkpoint
from songfeel.models.frontend import LogMelFrontend

log = logging.getLogger(__name__)

INPUT_NAME = "audio"
OUTPUT_NAME = "embedding"


def build_audio_model(checkpoint: str | Path) -> AudioEmbedder:
    """The checkpoint's embedder behind the in-graph log-mel front end, in eval mode."""
    embedder, meta = load_checkpoint(checkpoint)
    features = FeatureConfig.from_mapping(meta["features"])
    return AudioEmbedder(LogMelFrontend(features), embedder).eval()


def export_onnx(model: AudioEmbedder, path: str | Path, opset: int = 17) -> None:
    """Export ``model`` with MECOMP's input and output names and dynamic batch and length."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3 * model.frontend.cfg.sample_rate)
    # The TorchScript-based exporter keeps the window gather's dynamic length as plain ONNX ops.
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch", 1: "n_samples"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    graph = onnx.load(str(path))
    # The exporter leaves the embedding width symbolic; MECOMP's index needs it fixed.
    width = graph.graph.output[0].type.tensor_type.shape.dim[1]
    width.Clear()
    width.dim_value = model.embedder.projection.out_features
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


def check_parity(
    onnx_path: str | Path, model: AudioEmbedder, audio_paths: Sequence[str | Path], tolerance: float = 1e-4
) -> float:
    """Compare ONNX Runtime with torch on real songs, one at a time.

    Returns:
        the largest absolute difference over all songs and dimensions.

    Raises:
        ExportParityError: the difference exceeds ``tolerance``, or an output is not finite.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for path in audio_paths:
        samples = load_audio(path, sample_rate=model.frontend.cfg.sample_rate)[None]
        expected = model(torch.from_numpy(samples)).detach().numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: samples})[0]
        if not np.isfinite(actual).all():
            raise ExportParityError(f"{onnx_path}: non-finite embedding for {path}")
        diff = float(np.abs(actual - expected).max())
        worst = max(worst, diff)
        if diff > tolerance:
            raise ExportParityError(f"{onnx_path}: ONNX Runtime differs from torch by {diff:.2e} on {path}")
    return worst
