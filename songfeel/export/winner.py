"""Stage 06's work: pick the winning variant, export it to ONNX and the other formats, measure them.

Built on :mod:`songfeel.export.onnx` (the ONNX file and its contract), :mod:`songfeel.export.safetensors`
(safetensors + JSON), :mod:`songfeel.export.variants` (fp16, int8, their comparison) and
:mod:`songfeel.export.cost` (speed).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from songfeel.audio import load_audio
from songfeel.export.onnx import build_audio_model, check_parity, export_onnx
from songfeel.export.safetensors import config_path, write_safetensors
from songfeel.export.variants import compare_variants, export_fp16, export_int8
from songfeel.models.embedder import AudioEmbedder, load_checkpoint, parameter_count

log = logging.getLogger(__name__)


def select_winner(runs_dir: str | Path, metric: str = "val_triplet_accuracy") -> tuple[Path, dict[str, float]]:
    """The run folder with the highest ``metric`` in its ``metrics.json``; ties go to the first by name.

    Returns:
        the winning run folder and every candidate's score.

    Raises:
        FileNotFoundError: no run folder has a ``metrics.json``.
        KeyError: a run's metrics lack ``metric``.
    """
    candidates = sorted(Path(runs_dir).glob("*/metrics.json"))
    if not candidates:
        raise FileNotFoundError(f"{runs_dir}: no run has a metrics.json; run stage 04")
    scores = {}
    for path in candidates:
        run_metrics = json.loads(path.read_text())
        if metric not in run_metrics:
            raise KeyError(f"{path}: no metric {metric!r}")
        scores[path.parent.name] = float(run_metrics[metric])
    winner = max(sorted(scores), key=scores.__getitem__)  # max keeps the first of equals
    return Path(runs_dir) / winner, scores


def other_formats(model: AudioEmbedder, meta: Mapping, onnx_path: str | Path) -> dict[str, Path]:
    """Write the safetensors weights with their JSON config, and the fp16 and int8 ONNX variants,
    beside ``onnx_path`` (``model.safetensors``, ``model.json``, ``model.fp16.onnx``, ``model.int8.onnx``).

    Returns:
        kind (``safetensors``, ``json``, ``fp16``, ``int8``) -> path.
    """
    onnx_path = Path(onnx_path)
    weights = onnx_path.with_suffix(".safetensors")
    write_safetensors(model, meta, weights)
    weights.chmod(0o644)  # safetensors writes owner-only files
    return {
        "safetensors": weights,
        "json": config_path(weights),
        "fp16": export_fp16(onnx_path, onnx_path.with_name(f"{onnx_path.stem}.fp16.onnx")),
        "int8": export_int8(onnx_path, onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")),
    }


def export_winner(runs_dir, out_path, report_path, parity_tracks: Mapping[str, str | Path], metric: str, opset: int,
                  tolerance: float, variants: bool = True, mecomp_onnx: str | Path | None = None,
                  speed_repeats: int = 3) -> dict:
    """Select the winner, export it, check parity on ``parity_tracks`` (track id -> audio path)
    and write ``report_path`` (JSON).

    With ``variants``, also write the other formats (:func:`other_formats`) and measure them on the
    parity tracks: each variant's cosine similarity to the fp32 model, size and single-thread speed
    (:func:`songfeel.export.variants.compare_variants`), and the speed of every file against MECOMP's model
    ``mecomp_onnx``, all in one timed run (MECOMP left out, with a warning, when it is missing).

    Returns:
        the export record: metric, candidate scores, winner, parity, size, and with ``variants``
        the files, ``variants`` (name -> bytes, size_ratio, cosine_min, cosine_mean,
        x_real_time, speed_ratio) and ``vs_mecomp`` (name -> x_real_time, ratio_vs_mecomp).
    """
    winner, scores = select_winner(runs_dir, metric)
    model = build_audio_model(winner / "model.pt")
    export_onnx(model, out_path, opset)
    max_diff = check_parity(out_path, model, list(parity_tracks.values()), tolerance)
    record = {
        "metric": metric,
        "candidates": scores,
        "winner": winner.name,
        "onnx_path": str(out_path),
        "opset": opset,
        "n_parameters": parameter_count(model),
        "onnx_bytes": Path(out_path).stat().st_size,
        "parity_tracks": sorted(parity_tracks),
        "parity_max_abs_diff": max_diff,
        "parity_tolerance": tolerance,
    }
    if variants:
        _, meta = load_checkpoint(winner / "model.pt")
        files = other_formats(model, meta, out_path)
        record["files"] = {kind: str(path) for kind, path in files.items()}
        record["safetensors_bytes"] = files["safetensors"].stat().st_size
        songs = [load_audio(path, sample_rate=model.frontend.cfg.sample_rate) for path in parity_tracks.values()]
        if mecomp_onnx is not None and not Path(mecomp_onnx).is_file():
            log.warning("%s not found: the speed against MECOMP's model is left out", mecomp_onnx)
            mecomp_onnx = None
        table = compare_variants(out_path, {"fp16": files["fp16"], "int8": files["int8"]}, songs,
                         repeats=speed_repeats, mecomp_onnx=mecomp_onnx)
        record["variants"] = {
            name: {"bytes": int(row["bytes"]), "size_ratio": float(row["size_ratio"]),
                   "cosine_min": float(row["cosine_min"]), "cosine_mean": float(row["cosine_mean"]),
                   "x_real_time": float(row["speed_x_realtime"]), "speed_ratio": float(row["speed_ratio"])}
            for name, row in table.iterrows()}
        record["vs_mecomp"] = {name: {"x_real_time": float(row["speed_x_realtime"]),
                                      "ratio_vs_mecomp": _or_none(row["ratio_vs_mecomp"])}
                               for name, row in table.iterrows()}
        if mecomp_onnx is not None:
            record["vs_mecomp"]["mecomp"] = {"x_real_time": table.attrs["mecomp_x_realtime"], "ratio_vs_mecomp": 1.0}
        for name, row in record["variants"].items():
            log.info("%s: %d bytes, cosine to fp32 >= %.6f, %.0f x real time", name, row["bytes"], row["cosine_min"],
                     row["x_real_time"])
    Path(report_path).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    log.info("exported %s (%s = %.3f) to %s, parity %.2e", winner.name, metric, scores[winner.name], out_path, max_diff)
    return record


def _or_none(value: float) -> float | None:
    """JSON has no NaN: a missing ratio is null."""
    return None if math.isnan(value) else float(value)
