"""The teacher stage: run the teacher over every track of a manifest and cache its per-patch outputs.

The writer of the store that :mod:`songfeel.teacher.targets` reads (layout there), built
like stage 02's feature store (:mod:`songfeel.store`): per-track part files in
``<store>.parts/``, merged atomically, so the stage is incremental and crash-safe. Its
workers import TensorFlow (:mod:`songfeel.teacher.musicnn`); nothing else of songfeel does.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from joblib import delayed, effective_n_jobs

from songfeel.audio import load_audio
from songfeel.errors import AudioError, SongfeelError
from songfeel.hashing import config_hash, sha1_file
from songfeel.store import (
    SKIPPED_COLUMNS,
    merge_parts,
    part_path,
    parts_dir,
    plan_tracks,
    run_track_jobs,
    source_fingerprint,
)
from songfeel.teacher.targets import PATCH_SECONDS

log = logging.getLogger(__name__)

#: Version of the teacher-target computation; part of the config hash.
TARGETS_VERSION = 1


class TeacherStoreError(SongfeelError):
    """The teacher stage could not finish; the message says what is kept and how to resume."""


def teacher_config_hash(cfg: Mapping) -> str:
    """Hash of everything that changes stored targets: model, outputs, patch hop, loudness, version."""
    return config_hash({"model": str(cfg["model"]), "outputs": list(cfg["outputs"]),
                        "patch_hop_seconds": float(cfg["patch_hop_seconds"]),
                        "target_lufs": float(cfg["target_lufs"]), "version": TARGETS_VERSION})


_TEACHERS: dict[tuple, object] = {}


def _teacher(model: str, outputs: tuple[str, ...]):
    """This process's teacher (built and checked once per worker process)."""
    from songfeel.teacher.musicnn import MusicnnTeacher

    key = (model, outputs)
    if key not in _TEACHERS:
        _TEACHERS[key] = MusicnnTeacher(model, outputs)
    return _TEACHERS[key]


def teacher_track(track_id: str, path: str, cfg: Mapping, parts: str | Path, min_seconds: float) -> dict:
    """Decode one track at 16 kHz, normalise its loudness, run the teacher on its patches, write its part file.

    Runs in a worker; returns a small status dict, never the arrays.

    Returns:
        ``{"track_id", "path", "error", "seconds"}``: error is '' on success, else the cause
        (the track is skipped); ``seconds`` of audio analysed.
    """
    from songfeel.teacher.musicnn import (
        PATCH_FRAMES,
        TEACHER_HOP_LENGTH,
        TEACHER_SAMPLE_RATE,
        normalise_loudness,
        patch_starts,
        teacher_log_mel,
    )

    try:
        fingerprint = source_fingerprint(path)
        digest = sha1_file(path, progress=False)
        samples = load_audio(path, sample_rate=TEACHER_SAMPLE_RATE, min_seconds=max(min_seconds, PATCH_SECONDS))
    except AudioError as exc:
        return {"track_id": track_id, "path": path, "error": f"{type(exc).__name__}: {exc.cause}", "seconds": 0.0}
    except OSError as exc:
        return {"track_id": track_id, "path": path, "error": f"cannot read: {exc}", "seconds": 0.0}
    log_mel = teacher_log_mel(normalise_loudness(samples, TEACHER_SAMPLE_RATE, float(cfg["target_lufs"])))
    hop_frames = max(1, round(float(cfg["patch_hop_seconds"]) * TEACHER_SAMPLE_RATE / TEACHER_HOP_LENGTH))
    starts = patch_starts(log_mel.shape[0], hop_frames)
    if len(starts) == 0:
        return {"track_id": track_id, "path": path, "seconds": 0.0,
                "error": f"shorter than one {PATCH_FRAMES}-frame teacher patch"}
    teacher = _teacher(str(cfg["model"]), tuple(cfg["outputs"]))
    outputs = teacher.patches(log_mel, starts)
    bad = [name for name, value in outputs.items() if not np.isfinite(value).all()]
    if bad:
        return {"track_id": track_id, "path": path, "seconds": 0.0, "error": f"the teacher gave NaN or Inf {bad}"}
    duration = samples.shape[0] / TEACHER_SAMPLE_RATE
    attrs = {"path": str(path), "source_sha1": digest, **fingerprint, "duration_seconds": duration,
             "config_hash": teacher_config_hash(cfg)}
    target = part_path(Path(parts), track_id)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as h5:
        group = h5.require_group("tracks").create_group(track_id)
        group.attrs.update(attrs)
        group.create_dataset("patch_start_seconds", data=starts * TEACHER_HOP_LENGTH / TEACHER_SAMPLE_RATE)
        for name, value in outputs.items():
            group.create_dataset(name, data=value, compression="lzf")
    os.replace(tmp, target)
    return {"track_id": track_id, "path": path, "error": "", "seconds": duration, "n_parameters": teacher.n_parameters}


def write_teacher_store(tracks: pd.DataFrame, out_path: str | Path, cfg: Mapping, n_jobs: int,
                        min_seconds: float) -> tuple[pd.DataFrame, dict]:
    """Bring the teacher-target store at ``out_path`` up to date with ``tracks``.

    As stage 02's :func:`songfeel.store.write_store`: tracks already stored (same source
    file, same teacher config) are kept, finished parts of an interrupted run are reused,
    the rest is computed in joblib workers, tracks no longer listed are dropped, and bad
    files are reported, not fatal.

    Args:
        tracks: a manifest (``track_id``, ``path``).
        out_path: the HDF5 store.
        cfg: the ``teacher`` config group: ``model`` (e.g. ``MTT_vgg``), ``outputs`` (e.g.
            ``[tags, pool5]``), ``patch_hop_seconds`` (s), ``target_lufs`` (LUFS).
        n_jobs: worker processes (-1: one per core); each holds one TensorFlow session on one thread.
        min_seconds: shorter tracks are skipped (at least one 3 s patch), seconds.

    Returns:
        the skipped tracks (``track_id, path, error``) and a summary: ``kept, resumed, computed,
        skipped, removed, audio_seconds, compute_seconds, x_real_time_per_core, rewritten``.

    Raises:
        TeacherStoreError: a worker process died; finished tracks stay in the parts.
    """
    from songfeel.teacher.musicnn import MODELS, TEACHER_SAMPLE_RATE

    model = str(cfg["model"])
    if model not in MODELS or any(name not in MODELS[model] for name in cfg["outputs"]):
        raise ValueError(f"teacher {model!r} with outputs {list(cfg['outputs'])}: see songfeel.teacher.musicnn.MODELS")
    out_path = Path(out_path)
    parts = parts_dir(out_path)
    parts.mkdir(parents=True, exist_ok=True)
    cfg_hash = teacher_config_hash(cfg)
    kept, resumed, todo, previous = plan_tracks(tracks, out_path, parts, cfg_hash)
    log.info("teacher: %d current, %d resumed from parts, %d to compute", len(kept), len(resumed), len(todo))
    plain_cfg = {"model": model, "outputs": list(cfg["outputs"]), "patch_hop_seconds": float(cfg["patch_hop_seconds"]),
                 "target_lufs": float(cfg["target_lufs"])}
    started = time.perf_counter()
    jobs = (delayed(teacher_track)(t, p, plain_cfg, str(parts), min_seconds) for t, p in todo)
    statuses, skipped, computed = run_track_jobs(jobs, len(todo), n_jobs, "teacher", out_path, parts,
                                                 TeacherStoreError)
    compute_seconds = time.perf_counter() - started
    wanted = set(kept) | set(resumed) | set(computed)
    rewritten = bool(resumed or computed or previous - wanted or not out_path.is_file())
    audio_seconds = float(sum(s["seconds"] for s in statuses))
    workers = max(1, min(effective_n_jobs(n_jobs), len(todo)))
    speed = audio_seconds / compute_seconds / workers if computed else float("nan")
    if rewritten:
        earlier = {}
        if out_path.is_file():
            with h5py.File(out_path, "r") as old:
                earlier = {k: old.attrs[k] for k in ("n_parameters", "x_real_time_per_core") if k in old.attrs}
        n_parameters = next((s["n_parameters"] for s in statuses if not s["error"]), earlier.get("n_parameters", np.nan))
        root = {"n_parameters": n_parameters,
                "x_real_time_per_core": speed if computed else earlier.get("x_real_time_per_core", np.nan),
                "config_hash": cfg_hash, "teacher_model": model, "outputs": json.dumps(plain_cfg["outputs"]),
                "widths": json.dumps({name: MODELS[model][name] for name in plain_cfg["outputs"]}),
                "patch_seconds": PATCH_SECONDS, "patch_hop_seconds": plain_cfg["patch_hop_seconds"],
                "target_lufs": plain_cfg["target_lufs"], "sample_rate": TEACHER_SAMPLE_RATE}
        merge_parts(out_path, parts, root, kept, resumed + computed)
    summary = {"kept": len(kept), "resumed": len(resumed), "computed": len(computed), "skipped": len(skipped),
               "removed": len(previous - set(tracks["track_id"])), "audio_seconds": audio_seconds,
               "compute_seconds": compute_seconds,
               "x_real_time_per_core": speed,
               "rewritten": rewritten}
    log.info("teacher: %s", summary)
    frame = pd.DataFrame([{k: s[k] for k in SKIPPED_COLUMNS} for s in skipped], columns=list(SKIPPED_COLUMNS))
    return frame, summary


__all__ = ["TARGETS_VERSION", "TeacherStoreError", "teacher_config_hash", "teacher_track", "write_teacher_store"]
