"""Embedding cost: how much faster than real time each method embeds a song on one core.

The issue asks for the "× real time of embedding, single-threaded, for every
model, measured in the same run as MECOMP's model", with the parameter count and
the exported size. :func:`embedding_cost` times, on the same whole songs and in
the same run:

* every songfeel model (raw mono audio at 22050 Hz -> 32-d), with
  ``torch.set_num_threads(1)`` under ``torch.inference_mode()``, one song at a time;
* exported ONNX files (``onnx_models``, e.g. stage 06's ``model.onnx`` and its fp16
  and int8 variants) in ONNX Runtime with one intra-op thread, as MECOMP runs them;
* ``mecomp``: MECOMP's ONNX model ("AudioEmbeddingTiny") in ONNX Runtime with one
  intra-op thread, one song at a time, as MECOMP runs it;
* ``bliss`` (optional): bliss-rs's analysis of the *file* (``bliss-audio``), which
  decodes and resamples too, so its time includes decoding;
* ``mfcc`` (optional): ``librosa.feature.mfcc`` of the raw audio and its mean and
  standard deviation over time.

Songs are interleaved (each song runs through every method before the next, in
a rotating order), after one untimed warm-up call per method; wall time comes
from :func:`time.perf_counter`. BLAS is limited to one thread and, by default,
the calling thread is pinned to one CPU, so that threads a method spawns (bliss
runs its descriptors in threads) share that core. A speed is only meaningful as
a ratio against a baseline measured in the same run: ``ratio_vs_mecomp``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from songfeel.audio import MECOMP_SAMPLE_RATE
from songfeel.baselines.mecomp import (
    MECOMP_FRAME_SAMPLES,
    MECOMP_INPUT,
    MECOMP_OUTPUT,
    MecompModel,
)
from songfeel.errors import AudioDecodeError
from songfeel.export.onnx import export_onnx
from songfeel.features import FeatureConfig
from songfeel.models.embedder import AudioEmbedder, parameter_count

log = logging.getLogger(__name__)

#: Columns of the cost table.
COST_COLUMNS = ("method", "kind", "n_parameters", "size_bytes_fp32", "onnx_bytes", "audio_seconds", "seconds",
                "x_real_time", "ratio_vs_mecomp")

#: Method names of the baselines (a model may not take them).
MECOMP, BLISS, MFCC = "mecomp", "bliss", "mfcc"


def onnx_parameter_count(path: str | Path) -> int:
    """Number of weights of an ONNX model: the elements of its graph's initializers.

    For MECOMP's model this is 213,223 (its conv, GRU, attention and projection weights).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    graph = onnx.load(str(path), load_external_data=False).graph
    return int(sum(math.prod(tensor.dims) for tensor in graph.initializer))


def exported_onnx_bytes(model: AudioEmbedder, opset: int = 17) -> int:
    """Size in bytes of ``model`` exported by :func:`songfeel.export.onnx.export_onnx` (to a temporary file).

    The file holds the in-graph log-mel front end's constants (the Fourier and mel bases)
    besides the trained weights, as the model MECOMP would load does.
    """
    with tempfile.TemporaryDirectory(prefix="songfeel-cost-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, opset)
        return path.stat().st_size


@contextmanager
def single_threaded(pin_cpu: bool = True) -> Iterator[None]:
    """Run the body on one thread (torch, BLAS) and, with ``pin_cpu``, on one CPU; restore everything after.

    ``torch.set_num_threads(1)`` and threadpoolctl's BLAS limit of 1 are undone on exit.
    ``pin_cpu`` sets the calling thread's CPU affinity (Linux ``sched_setaffinity``) to the
    lowest CPU it may use, so that threads started inside (bliss-rs runs its descriptors in
    threads; FFmpeg may decode in threads) inherit it; ignored where the OS lacks it.
    """
    from threadpoolctl import threadpool_limits

    torch_threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if pin_cpu and hasattr(os, "sched_setaffinity") else None
    with threadpool_limits(limits=1, user_api="blas"):
        torch.set_num_threads(1)
        try:
            if affinity:
                os.sched_setaffinity(0, {min(affinity)})
            yield
        finally:
            if affinity:
                os.sched_setaffinity(0, affinity)
            torch.set_num_threads(torch_threads)


def _check_audio(audio: Mapping[str, np.ndarray], min_samples: int) -> dict[str, np.ndarray]:
    """The songs as contiguous float32 mono arrays; ValueError naming a song that is not usable."""
    if not audio:
        raise ValueError("no audio to embed")
    songs = {}
    for key, samples in audio.items():
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"song {key!r}: audio must be mono, shape (n_samples,), got {samples.shape}")
        if samples.shape[0] < min_samples:
            raise ValueError(f"song {key!r}: {samples.shape[0]} samples, fewer than the {min_samples} needed")
        if not np.isfinite(samples).all():
            raise ValueError(f"song {key!r}: audio holds NaN or Inf")
        songs[key] = samples
    return songs


def _bliss_runner(paths: Mapping[str, str | Path]) -> Callable[[str], None]:
    # Timing needs bliss in this process, so first make sure it cannot kill it (SIGILL on a CPU
    # without AVX-512): its probe runs in a subprocess and raises NativeBaselineUnavailable.
    from songfeel.baselines.bliss import BLISS
    from songfeel.native import require

    require(BLISS)
    import bliss_audio

    def run(key: str) -> None:
        path = str(paths[key])
        try:
            bliss_audio.Song(path).analysis
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - bliss's PanicException is a BaseException
            raise AudioDecodeError(path, f"bliss cannot analyse it: {type(exc).__name__}: {exc}") from exc

    return run


def _mfcc_runner(songs: Mapping[str, np.ndarray], cfg: FeatureConfig) -> Callable[[str], None]:
    import librosa

    def run(key: str) -> None:
        coefficients = librosa.feature.mfcc(y=songs[key], sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                                            hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                            fmax=cfg.fmax, center=False)
        np.concatenate([coefficients.mean(axis=1), coefficients.std(axis=1)])

    return run


def _time_interleaved(runners: Mapping[str, Callable[[str], None]], keys: list[str], repeats: int) -> dict[str, float]:
    """Seconds each runner spends on all ``keys``, ``repeats`` times, interleaved, after one warm-up call each."""
    for run in runners.values():
        run(keys[0])
    names = list(runners)
    seconds = dict.fromkeys(names, 0.0)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection would land on whichever method runs then
    try:
        steps = [(r, i, key) for r in range(repeats) for i, key in enumerate(keys)]
        for step, (_, _, key) in enumerate(tqdm(steps, desc="embedding cost", unit="song")):
            shift = step % len(names)
            for name in names[shift:] + names[:shift]:  # rotate who goes first
                started = time.perf_counter()
                runners[name](key)
                seconds[name] += time.perf_counter() - started
    finally:
        if gc_was_enabled:
            gc.enable()
    return seconds


#: The row of a method that learns nothing (bliss, mfcc): no parameters, no ONNX file.
_NOT_A_MODEL = {"n_parameters": math.nan, "size_bytes_fp32": math.nan, "onnx_bytes": math.nan}


def _check_arguments(models: Mapping[str, torch.nn.Module], onnx_models: Mapping[str, str | Path],
                     audio: Mapping[str, np.ndarray], sample_rate: int, repeats: int,
                     bliss_paths: Mapping[str, str | Path] | None) -> dict[str, np.ndarray]:
    """The songs of :func:`embedding_cost` (:func:`_check_audio`) once its arguments are checked; ValueError if not."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if sample_rate != MECOMP_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be {MECOMP_SAMPLE_RATE} Hz (MECOMP's), got {sample_rate}")
    taken = {MECOMP, BLISS, MFCC} & (set(models) | set(onnx_models))
    if taken:
        raise ValueError(f"model names {sorted(taken)} are reserved for the baselines")
    for name, model in models.items():
        rate = getattr(getattr(getattr(model, "frontend", None), "cfg", None), "sample_rate", sample_rate)
        if rate != sample_rate:
            raise ValueError(f"model {name!r} takes audio at {rate} Hz, not {sample_rate} Hz")
    songs = _check_audio(audio, MECOMP_FRAME_SAMPLES)
    keys = list(songs)
    if bliss_paths is not None and set(bliss_paths) != set(keys):
        raise ValueError(f"bliss_paths must have the keys of audio; missing {sorted(set(keys) - set(bliss_paths))}, "
                         f"extra {sorted(set(bliss_paths) - set(keys))}")
    return songs


def _model_runners(models: Mapping[str, torch.nn.Module], songs: Mapping[str, np.ndarray], kinds: Mapping[str, str],
                   export: bool) -> tuple[dict[str, dict], dict[str, Callable[[str], None]]]:
    """The rows (kind, parameters, sizes) and runners of the songfeel models, in their order."""
    rows: dict[str, dict] = {}
    runners: dict[str, Callable[[str], None]] = {}
    tensors = {key: torch.from_numpy(samples[None]) for key, samples in songs.items()}
    for name, model in models.items():
        n_parameters = parameter_count(model)
        onnx_bytes = math.nan
        if export and isinstance(model, AudioEmbedder):
            onnx_bytes = exported_onnx_bytes(model)
        elif export:
            log.warning("%s: not an AudioEmbedder, so not exported; onnx_bytes is NaN", name)
        rows[name] = {"kind": kinds.get(name, "variant"), "n_parameters": n_parameters,
                      "size_bytes_fp32": 4 * n_parameters, "onnx_bytes": onnx_bytes}
        runners[name] = lambda key, model=model: model(tensors[key])
    return rows, runners


def _onnx_runner(path: str | Path, kind: str, songs: Mapping[str, np.ndarray]) -> tuple[dict, Callable[[str], None]]:
    """The row and runner of an ONNX file with MECOMP's contract, in ONNX Runtime with one intra-op thread."""
    session = MecompModel(path, intra_op_threads=1).session
    n_parameters = onnx_parameter_count(path)
    row = {"kind": kind, "n_parameters": n_parameters, "size_bytes_fp32": 4 * n_parameters,
           "onnx_bytes": Path(path).stat().st_size}
    return row, lambda key: session.run([MECOMP_OUTPUT], {MECOMP_INPUT: songs[key][None]})


def _add_onnx_runners(onnx_models: Mapping[str, str | Path], songs: Mapping[str, np.ndarray],
                      kinds: Mapping[str, str], rows: dict[str, dict],
                      runners: dict[str, Callable[[str], None]]) -> None:
    """Add the rows and runners of the exported ONNX files (kind ``"onnx"`` by default)."""
    for name, path in onnx_models.items():
        if name in rows:
            raise ValueError(f"{name!r} names both a model and an ONNX file")
        rows[name], runners[name] = _onnx_runner(path, kinds.get(name, "onnx"), songs)


def _add_baseline_runners(songs: Mapping[str, np.ndarray], kinds: Mapping[str, str], rows: dict[str, dict],
                          runners: dict[str, Callable[[str], None]], mecomp_onnx: str | Path | None,
                          bliss_paths: Mapping[str, str | Path] | None, mfcc_features: FeatureConfig | None) -> None:
    """Add the rows and runners of MECOMP's model, bliss and MFCC (with ``mfcc_features``), each where asked for,
    in that order."""
    if mecomp_onnx is not None:
        rows[MECOMP], runners[MECOMP] = _onnx_runner(mecomp_onnx, kinds.get(MECOMP, "baseline"), songs)
    if bliss_paths is not None:
        rows[BLISS] = {"kind": kinds.get(BLISS, "baseline"), **_NOT_A_MODEL}
        runners[BLISS] = _bliss_runner(bliss_paths)
    if mfcc_features is not None:
        rows[MFCC] = {"kind": kinds.get(MFCC, "baseline"), **_NOT_A_MODEL}
        runners[MFCC] = _mfcc_runner(songs, mfcc_features)


def _time_in_eval_mode(models: Mapping[str, torch.nn.Module], runners: Mapping[str, Callable[[str], None]],
                       keys: list[str], repeats: int, pin_cpu: bool) -> dict[str, float]:
    """:func:`_time_interleaved` on one thread (:func:`single_threaded`) with the models in eval mode, then
    their modes restored."""
    training = {name: model.training for name, model in models.items()}
    try:
        for model in models.values():
            model.eval()
        with single_threaded(pin_cpu), torch.inference_mode():
            return _time_interleaved(runners, keys, repeats)
    finally:
        for name, model in models.items():
            model.train(training[name])


def _cost_table(rows: Mapping[str, dict], seconds: Mapping[str, float], audio_seconds: float) -> pd.DataFrame:
    """The cost table (:data:`COST_COLUMNS`) of the methods' rows and timed seconds, each row logged."""
    table = pd.DataFrame([{"method": name, **row, "audio_seconds": audio_seconds, "seconds": seconds[name],
                           "x_real_time": audio_seconds / seconds[name]} for name, row in rows.items()])
    mecomp_speed = table.set_index("method")["x_real_time"].get(MECOMP, math.nan)
    table["ratio_vs_mecomp"] = table["x_real_time"] / mecomp_speed
    for column in ("n_parameters", "size_bytes_fp32", "onnx_bytes"):
        table[column] = table[column].astype(np.float64)
    for row in table.itertuples():
        log.info("%s: %.0f x real time on one core (%.2f x MECOMP), %.1f s of audio in %.3f s", row.method,
                 row.x_real_time, row.ratio_vs_mecomp, row.audio_seconds, row.seconds)
    return table[list(COST_COLUMNS)]


def embedding_cost(
    models: Mapping[str, torch.nn.Module],
    audio: Mapping[str, np.ndarray],
    sample_rate: int = MECOMP_SAMPLE_RATE,
    mecomp_onnx: str | Path | None = None,
    repeats: int = 1,
    bliss_paths: Mapping[str, str | Path] | None = None,
    mfcc: bool = True,
    kinds: Mapping[str, str] | None = None,
    features: FeatureConfig | None = None,
    export: bool = True,
    pin_cpu: bool = True,
    onnx_models: Mapping[str, str | Path] | None = None,
) -> pd.DataFrame:
    """Single-threaded embedding speed (× real time), parameters and exported size of every method.

    Every method embeds the same whole songs in the same run (see the module docstring):
    ``repeats`` passes over ``audio``, each song through every method before the next,
    after one untimed warm-up call per method, one thread (and by default one CPU).

    Args:
        models: name -> songfeel model taking raw mono audio (1, n_samples) float32 at
            ``sample_rate`` and returning (1, 32), e.g.
            :func:`songfeel.export.onnx.build_audio_model` of a checkpoint. Put in eval mode
            for the run (their mode is restored after).
        audio: song key -> mono samples at ``sample_rate``, shape (n_samples,), at least
            2048 samples (one MECOMP frame); cast to float32.
        sample_rate: Hz; must be 22050 (MECOMP's rate, and the models').
        mecomp_onnx: MECOMP's ONNX model, run with ONNX Runtime and one intra-op thread
            (row ``mecomp``); None leaves it out and ``ratio_vs_mecomp`` is NaN.
        repeats: passes over the songs (>= 1); times and audio seconds add up.
        bliss_paths: song key -> audio file (the same keys as ``audio``), analysed by
            bliss-rs (row ``bliss``; its time includes decoding and resampling the file);
            None leaves bliss out.
        mfcc: add the row ``mfcc``: ``librosa.feature.mfcc`` of the raw audio (with
            ``features``' STFT and mel parameters, ``center=False``), mean and std over time.
        kinds: method name -> kind, overriding the default ``"variant"`` for models and
            ``"baseline"`` for mecomp, bliss and mfcc (e.g. ``{"random-init": "baseline"}``).
        features: the MFCC baseline's parameters (``conf/features``); required when ``mfcc``.
        export: export each :class:`AudioEmbedder` to ONNX to measure ``onnx_bytes``.
        pin_cpu: pin the timed run to one CPU (see :func:`single_threaded`).
        onnx_models: name -> ONNX file with MECOMP's contract (input ``audio``, output
            ``embedding``), run like ``mecomp`` (kind ``"onnx"`` unless ``kinds`` says otherwise).

    Returns:
        DataFrame with the columns :data:`COST_COLUMNS`, one row per method: the models
        in the order given, then mecomp, bliss and mfcc. ``n_parameters`` counts the
        trainable parameters (for mecomp, the ONNX initializers' elements; NaN for bliss
        and mfcc, which learn nothing), ``size_bytes_fp32 = 4 * n_parameters``,
        ``onnx_bytes`` the exported (mecomp: shipped) ONNX file's size (NaN otherwise),
        ``audio_seconds`` the seconds of audio embedded (``repeats`` × the songs' total),
        ``seconds`` the wall time spent embedding, ``x_real_time = audio_seconds / seconds``
        and ``ratio_vs_mecomp`` = x_real_time / mecomp's x_real_time (NaN without mecomp).

    Raises:
        ValueError: no songs, a song that is not mono / finite / at least 2048 samples,
            ``sample_rate`` other than 22050 or than a model's front end, a model named
            mecomp, bliss or mfcc, ``bliss_paths`` with other keys than ``audio``, or
            ``repeats`` < 1, or ``mfcc`` without ``features``.
        FileNotFoundError: ``mecomp_onnx`` does not exist.
        songfeel.errors.AudioDecodeError: bliss cannot analyse a file.
        songfeel.native.NativeBaselineUnavailable: ``bliss_paths`` is given but bliss cannot
            run on this CPU (its probe died, e.g. by SIGILL); leave bliss out and say why.
    """
    onnx_models = dict(onnx_models or {})
    songs = _check_arguments(models, onnx_models, audio, sample_rate, repeats, bliss_paths)
    if mfcc and features is None:
        raise ValueError("the MFCC baseline needs its features (conf/features): pass features, or mfcc=False")
    kinds = dict(kinds or {})
    rows, runners = _model_runners(models, songs, kinds, export)
    _add_onnx_runners(onnx_models, songs, kinds, rows, runners)
    mfcc_features = features if mfcc else None
    _add_baseline_runners(songs, kinds, rows, runners, mecomp_onnx, bliss_paths, mfcc_features)
    seconds = _time_in_eval_mode(models, runners, list(songs), repeats, pin_cpu)
    audio_seconds = repeats * sum(len(samples) for samples in songs.values()) / sample_rate
    return _cost_table(rows, seconds, audio_seconds)
