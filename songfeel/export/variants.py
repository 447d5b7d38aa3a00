"""Other ONNX variants of the exported model: fp16 and int8, and their comparison with fp32.

- :func:`export_fp16`: the ONNX model with the embedder's weights stored as fp16
  (computed in fp32) and the log-mel front end untouched; input ``audio`` and
  output ``embedding`` stay float32.
- :func:`export_int8`: ONNX Runtime dynamic quantisation (int8 weights of the
  embedder's MatMul and Gemm, activations quantised at run time), the front end
  left in fp32.
- :func:`compare_variants`: size, agreement with the fp32 model (cosine) and
  single-thread speed of each variant, in one run.

Both find the front end's nodes with :func:`frontend_node_names`, and every variant
keeps MECOMP's contract (:mod:`songfeel.export.onnx`): input ``audio`` float32
(batch, n_samples), mono at 22050 Hz; output ``embedding`` float32 (batch, 32),
unit L2 norm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, numpy_helper

from songfeel.export.cost import MECOMP, embedding_cost
from songfeel.export.onnx import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

#: Prefix of the ONNX node names of the embedder (the TorchScript exporter names nodes by module path); every
#: other node is the front end or :class:`~songfeel.models.embedder.AudioEmbedder`'s glue around it (padding,
#: the trailing-silence mask).
EMBEDDER_PREFIX = "/embedder/"


# --------------------------------------------------------------------------------------------------------------------
# ONNX graph helpers
# --------------------------------------------------------------------------------------------------------------------


def frontend_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the model's input to the embedder: the log-mel front end and the glue.

    That is every node but the embedder's: those named :data:`EMBEDDER_PREFIX`...,
    and unprefixed nodes (the exporter leaves some constants and Identity nodes
    without a module path, e.g. ``Constant_110``) whose outputs only embedder
    nodes use. The front end's nodes are named after the module that calls
    them (``/frontend/...`` or, for :class:`~songfeel.models.frontend.LogMelFrontend`
    methods called from :meth:`~songfeel.models.embedder.AudioEmbedder.forward`,
    top-level names like ``/Conv``), so they are found as the complement of the embedder.

    Raises:
        ValueError: no node is named :data:`EMBEDDER_PREFIX`... (not a model from
            :func:`songfeel.export.onnx.export_onnx`).
    """
    nodes = list(model.graph.node)
    if not any(node.name.startswith(EMBEDDER_PREFIX) for node in nodes):
        raise ValueError(f"no node is named {EMBEDDER_PREFIX}...: not a model from songfeel.export.onnx.export_onnx")
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    graph_outputs = {o.name for o in model.graph.output}
    embedder = [node.name.startswith(EMBEDDER_PREFIX) for node in nodes]
    changed = True
    while changed:
        changed = False
        for index, node in enumerate(nodes):
            if embedder[index] or node.name.startswith("/"):
                continue
            users = [u for out in node.output for u in consumers.get(out, [])]
            if users and all(embedder[u] for u in users) and not graph_outputs & set(node.output):
                embedder[index] = changed = True
    return [node.name for node, inside in zip(nodes, embedder) if not inside]


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` so that every node comes after the producers of its inputs (stable)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        remaining = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            raise ValueError(f"graph has a cycle or dangling inputs at {[n.name for n in remaining[:5]]}")
        pending = remaining
    del graph.node[:]
    graph.node.extend(ordered)


def _check_contract(model: onnx.ModelProto, path: Path) -> None:
    inputs, outputs = list(model.graph.input), list(model.graph.output)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ValueError(f"{path}: inputs {[i.name for i in inputs]} outputs {[o.name for o in outputs]}, "
                         f"expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]")
    for value in (inputs[0], outputs[0]):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError(f"{path}: {value.name} is not float32")


# --------------------------------------------------------------------------------------------------------------------
# fp16 and int8
# --------------------------------------------------------------------------------------------------------------------


def _fp16_weights(model: onnx.ModelProto, frontend: set[str]) -> int:
    """Store every float32 initializer that only embedder nodes use as fp16, behind a Cast to float32.

    Returns:
        the number of initializers converted.

    Raises:
        ValueError: a weight exceeds fp16's range (65504).
    """
    graph = model.graph
    users: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.name)
    casts = []
    for tensor in list(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or not users.get(tensor.name) or users[tensor.name] & frontend:
            continue
        values = numpy_helper.to_array(tensor)
        if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
            raise ValueError(f"initializer {tensor.name} exceeds the fp16 range")
        half = numpy_helper.from_array(values.astype(np.float16), tensor.name + "_fp16")
        graph.initializer.remove(tensor)
        graph.initializer.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                           name=tensor.name + "_to_fp32"))
    graph.node.extend(casts)
    _topological_sort(graph)
    return len(casts)


def export_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write an fp16 variant of an fp32 ONNX model from :func:`songfeel.export.onnx.export_onnx`.

    Every float32 weight of the embedder (initializers that no front-end node
    uses) is stored as fp16 and cast back to float32 in the graph by a ``Cast``
    node, which ONNX Runtime folds into a float32 constant when it loads the
    model. So the file shrinks by half of the embedder's bytes, the arithmetic
    stays float32 (the only error is the weights' rounding, ~2^-11 relative) and
    the speed is the fp32 model's; any runtime that knows ``Cast`` runs it
    (ONNX Runtime, tract, burn).

    The log-mel front end is untouched, float32: its power spectra reach ~1e9 for
    full-scale audio, beyond fp16's 65504, and fp16 DFT and mel constants (11-bit
    mantissa) would raise the spectral-leakage floor to about -66 dB. Input
    ``audio`` and output ``embedding`` stay float32 (MECOMP's contract).

    Why not fp16 arithmetic (``onnxruntime.transformers.float16.convert_float_to_float16``
    with the front-end nodes in ``node_block_list`` and ``keep_io_types=True``),
    as tried with onnxruntime 1.31.1:

    - ONNX Runtime's CPU provider has no fp16 kernels for Conv, GRU, MatMul,
      BatchNormalization ... on x86; it inserts Casts around them and computes
      in float32, so fp16 arithmetic is no faster there and rounds every
      activation to fp16 on the way;
    - the converter gives an invalid graph when a tensor has several blocked
      consumers (one Cast per consumer, all with the same name and output), and
      rounds the graph input and every tensor between two blocked nodes through
      fp16 (a Cast to fp16 and back), which has to be repaired by hand;
    - once repaired, creating a session for the GRU model crashed ONNX Runtime
      (segmentation fault) at the default optimisation level, ORT_ENABLE_ALL;
      disabling ``NchwcTransformer`` or ``FuseFp16InitializerToFp32NodeTransformer``
      avoids it, but MECOMP cannot be asked to.

    Returns:
        ``out_path``.

    Raises:
        ValueError: a weight exceeds the fp16 range; the result breaks MECOMP's contract.
        onnx.checker.ValidationError: the result is not a valid ONNX model.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    converted = _fp16_weights(model, set(frontend_node_names(model)))
    model.doc_string = (f"{onnx_path.name} with the embedder's weights stored as fp16 "
                        "(songfeel.export.variants.export_fp16)")
    _check_contract(model, out_path)
    onnx.checker.check_model(model, full_check=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    log.info("fp16: %s, %d weights, %d -> %d bytes", out_path, converted, onnx_path.stat().st_size,
             out_path.stat().st_size)
    return out_path


def export_int8(onnx_path: str | Path, out_path: str | Path, per_channel: bool = True,
                exclude_op_types: Sequence[str] = ("Conv",)) -> Path:
    """Write a dynamically quantised int8 variant of an fp32 ONNX model.

    ``onnxruntime.quantization.quantize_dynamic`` with signed 7-bit weights in int8
    (``reduce_range``, so that CPUs without VNNI cannot saturate; per output channel when
    ``per_channel``): the embedder's MatMul and Gemm nodes with
    a constant weight become ``MatMulInteger`` with int8 weights, their activations
    quantised to uint8 at run time (``DynamicQuantizeLinear``). Left in float32:

    - the front end (every node of :func:`frontend_node_names`): 8 bits cannot hold
      the DFT and mel matrices or a power spectrum whose range is ~190 dB;
    - by default (``exclude_op_types``), Conv: the window encoder's convolutions
      are tiny (depthwise and 1x1, ~12 k weights, ~9 kB saved as int8), and
      ONNX Runtime's ``ConvInteger`` with per-run activation quantisation made the
      whole model about half as fast on one CPU thread (onnxruntime 1.31.1; accuracy
      was fine: cosine > 0.9999 to fp32), so it is not worth it;
    - what ONNX Runtime does not quantise dynamically: GRU (only LSTM has a dynamic
      int8 kernel), so the GRU head's recurrent weights stay float32 and its int8
      file is barely smaller; BatchNormalization, LayerNormalization, Softmax;
    - MatMuls between two activations (attention scores): ``MatMulConstBOnly``.

    ``value_info`` (intermediate shapes the quantiser stores) is dropped from the
    result: ONNX Runtime infers it again, and it would add ~13 kB.

    Args:
        onnx_path: the fp32 model (:func:`songfeel.export.onnx.export_onnx`).
        out_path: the int8 model.
        per_channel: one weight scale per output channel rather than per tensor.
        exclude_op_types: op types left in float32 besides the front end; ``()`` quantises Conv too.

    Returns:
        ``out_path``.

    Raises:
        ValueError: the result breaks MECOMP's contract.
        onnx.checker.ValidationError: the result is not a valid ONNX model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    excluded = set(frontend_node_names(model)) | {n.name for n in model.graph.node if n.op_type in exclude_op_types}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # reduce_range: 7-bit weights, so that the uint8 x int8 products of CPUs without VNNI (AVX2's
    # vpmaddubsw sums pairs into int16) cannot saturate; with 8 bits, on an AVX2 CPU without AVX-512 the
    # attention student's int8 file fell to cosine 0.983 against fp32 (0.99 or more with AVX-512).
    quantize_dynamic(onnx_path, out_path, weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=True,
                     nodes_to_exclude=sorted(excluded), extra_options={"MatMulConstBOnly": True})
    quantised = onnx.load(str(out_path))
    del quantised.graph.value_info[:]
    quantised.doc_string = f"int8 dynamic quantisation of {onnx_path.name}"
    _check_contract(quantised, out_path)
    onnx.checker.check_model(quantised, full_check=True)
    onnx.save(quantised, str(out_path))
    ops = sorted({n.op_type for n in quantised.graph.node if "Integer" in n.op_type})
    log.info("int8: %s (%s), %d -> %d bytes", out_path, ", ".join(ops) or "nothing quantised",
             onnx_path.stat().st_size, out_path.stat().st_size)
    return out_path


# --------------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------------


def single_thread_session(path: str | Path) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with one intra-op and one inter-op thread (default graph optimisations)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare_variants(reference_onnx: str | Path, variant_paths: Mapping[str, str | Path],
                     audio: Sequence[np.ndarray], repeats: int = 3, sample_rate: int = 22050,
                     reference_name: str = "fp32", mecomp_onnx: str | Path | None = None) -> pd.DataFrame:
    """Size, agreement with the reference and single-thread speed of each model variant.

    Each song is embedded alone (batch 1) for the cosines. The speeds come from one run
    of :func:`songfeel.export.cost.embedding_cost`: every file, and MECOMP's model if given, in
    ONNX Runtime on one thread and one CPU, ``repeats`` passes over the songs after a
    warm-up call, the models interleaved song by song, so that a busy machine slows
    them alike.

    Args:
        reference_onnx: the fp32 model.
        variant_paths: variant name -> ONNX file.
        audio: songs, mono float32 at ``sample_rate``, shape (n_samples,) each, at least
            2048 samples (one MECOMP frame).
        repeats: timed passes.
        sample_rate: Hz; 22050 (MECOMP's rate).
        reference_name: the reference's row name.
        mecomp_onnx: MECOMP's model, timed in the same run; None leaves it out.

    Returns:
        one row per model, the reference first, indexed by name, with columns
        ``path``, ``bytes`` (file size), ``size_ratio`` (to the reference),
        ``cosine_min`` and ``cosine_mean`` (over songs, to the reference's
        embedding), ``max_norm_error`` (largest ``| ||e|| - 1 |``), ``audio_seconds``
        (one pass), ``compute_seconds`` (mean per pass), ``speed_x_realtime`` (audio
        seconds per compute second), ``speed_ratio`` (to the reference) and
        ``ratio_vs_mecomp`` (to MECOMP's model; NaN without it), all from the same run.
        ``table.attrs["mecomp_x_realtime"]`` holds MECOMP's speed (NaN without it).

    Raises:
        ValueError: no songs, ``repeats`` < 1, or a variant is named like the reference.
    """
    if not audio or repeats < 1:
        raise ValueError(f"need at least one song and one repeat, got {len(audio)} songs and repeats={repeats}")
    if reference_name in variant_paths:
        raise ValueError(f"a variant is named {reference_name!r}, the reference's name")
    paths = {reference_name: Path(reference_onnx), **{name: Path(p) for name, p in variant_paths.items()}}
    sessions = {name: single_thread_session(path) for name, path in paths.items()}
    songs = [np.ascontiguousarray(song, dtype=np.float32)[None] for song in audio]
    embeddings = {name: [session.run([OUTPUT_NAME], {INPUT_NAME: song})[0][0] for song in songs]
                  for name, session in sessions.items()}
    speeds = embedding_cost({}, {f"{i:03d}": song[0] for i, song in enumerate(songs)}, sample_rate,
                            mecomp_onnx=mecomp_onnx, repeats=repeats, mfcc=False, export=False,
                            onnx_models=paths).set_index("method")
    audio_seconds = sum(song.shape[1] for song in songs) / sample_rate
    rows = []
    for name, path in paths.items():
        cosines = [_cosine(e, r) for e, r in zip(embeddings[name], embeddings[reference_name])]
        rows.append({
            "variant": name,
            "path": str(path),
            "bytes": path.stat().st_size,
            "size_ratio": path.stat().st_size / paths[reference_name].stat().st_size,
            "cosine_min": min(cosines),
            "cosine_mean": float(np.mean(cosines)),
            "max_norm_error": max(abs(float(np.linalg.norm(e.astype(np.float64))) - 1.0) for e in embeddings[name]),
            "audio_seconds": audio_seconds,
            "compute_seconds": speeds.loc[name, "seconds"] / repeats,
            "speed_x_realtime": speeds.loc[name, "x_real_time"],
            "speed_ratio": speeds.loc[name, "x_real_time"] / speeds.loc[reference_name, "x_real_time"],
            "ratio_vs_mecomp": speeds.loc[name, "ratio_vs_mecomp"],
        })
    table = pd.DataFrame(rows).set_index("variant")
    table.attrs["mecomp_x_realtime"] = float(speeds["x_real_time"].get(MECOMP, np.nan))
    log.info("variants:\n%s", table.drop(columns="path").to_string(float_format=lambda v: f"{v:.5g}"))
    return table
