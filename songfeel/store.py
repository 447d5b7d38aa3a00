"""The HDF5 feature store written by stage 02 and read by every later stage.

Layout of the store (one HDF5 file)::

    /                       attrs: feature_version, config_hash, dtype, sample_rate, n_fft,
                                   hop_length, n_mels, n_mfcc, fmin, fmax, amin
    /tracks/<track_id>/     attrs: path, source_sha1, source_size, source_mtime_ns,
                                   n_samples, duration_seconds, config_hash
        logmel              (n_frames, n_mels) in dB, float32 or float16
        mfcc                (n_frames, n_mfcc), same dtype

Every track is a ragged array of frames, chunked along time (256 frames) and
lzf-compressed, so a random patch reads one or two chunks, never the whole
track. Patches (chunked or sliding windows of frames) are views taken at read
time and never stored. Readers always get float32.

Writing is incremental and crash-safe. Workers decode and compute tracks in
parallel (joblib: loky processes on one machine, or a Dask cluster), and each
worker writes its track to its own part file in ``<store>.parts/``, created
under a temporary name and renamed when complete. Once every track is done,
the parts and the unchanged tracks of the previous store are merged into a new
file that replaces the store atomically, and the parts are removed. A run killed
at any point leaves the previous store intact and the finished parts on disk;
the next run reuses them. A track is recomputed only when its source file
(size and mtime, then SHA1) or the feature config changed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import BrokenExecutor
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import AudioError, SongfeelError
from songfeel.features import FEATURE_VERSION, FeatureConfig, log_mel, mfcc
from songfeel.hashing import config_hash, sha1_file, sha1_text

log = logging.getLogger(__name__)

SKIPPED_COLUMNS = ("track_id", "path", "error")


class FeatureStoreError(SongfeelError):
    """Stage 02 could not finish; the message says what is kept and how to resume."""

DTYPES = ("float32", "float16")
CHUNK_FRAMES = 256


def store_config_hash(cfg: FeatureConfig, dtype: str) -> str:
    """Hash of everything that changes stored values: feature parameters, version and dtype."""
    return config_hash({**cfg.to_dict(), "feature_version": FEATURE_VERSION, "dtype": dtype})


def parts_dir(store_path: str | Path) -> Path:
    """The folder of part files of a store: ``<store>.parts``."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".parts")


def part_path(parts: Path, track_id: str) -> Path:
    """The part file of one track (named by a hash: track ids may hold ':')."""
    return parts / f"{sha1_text(track_id)[:20]}.h5"


def source_fingerprint(path: str | Path) -> dict[str, int]:
    """Size (bytes) and modification time (ns) of a source file: the cheap change check."""
    stat = os.stat(path)
    return {"source_size": int(stat.st_size), "source_mtime_ns": int(stat.st_mtime_ns)}


def extract_track(
    track_id: str, path: str, cfg: FeatureConfig, dtype: str, parts: str | Path, min_seconds: float
) -> dict:
    """Decode one track, compute its log-mel and MFCC, and write its part file.

    Runs in a worker: it returns a small status dict, never the arrays, so the
    memory of the calling process does not grow with the number of tracks.

    Returns:
        ``{"track_id", "path", "error"}`` where error is '' on success, else the
        cause (the track is then skipped), plus ``seconds`` of audio.
    """
    try:
        fingerprint = source_fingerprint(path)
        digest = sha1_file(path, progress=False)
        samples = load_audio(path, sample_rate=cfg.sample_rate,
                             min_seconds=max(min_seconds, cfg.n_fft / cfg.sample_rate))
    except AudioError as exc:
        return {"track_id": track_id, "path": path, "error": f"{type(exc).__name__}: {exc.cause}", "seconds": 0.0}
    except OSError as exc:
        return {"track_id": track_id, "path": path, "error": f"cannot read: {exc}", "seconds": 0.0}
    logmel = log_mel(samples, cfg)
    attrs = {
        "path": str(path),
        "source_sha1": digest,
        **fingerprint,
        "n_samples": int(samples.shape[0]),
        "duration_seconds": samples.shape[0] / cfg.sample_rate,
        "config_hash": store_config_hash(cfg, dtype),
    }
    target = part_path(Path(parts), track_id)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as h5:
        _write_track(h5.require_group("tracks"), track_id, attrs, logmel, mfcc(logmel, cfg), dtype)
    os.replace(tmp, target)
    return {"track_id": track_id, "path": path, "error": "", "seconds": attrs["duration_seconds"]}


def _write_track(root: h5py.Group, track_id: str, attrs: dict, logmel: np.ndarray, coeffs: np.ndarray,
                 dtype: str) -> None:
    group = root.create_group(track_id)
    group.attrs.update(attrs)
    for name, array in (("logmel", logmel), ("mfcc", coeffs)):
        chunks = (min(CHUNK_FRAMES, array.shape[0]), array.shape[1])
        group.create_dataset(name, data=array.astype(dtype, copy=False), chunks=chunks, compression="lzf")


def _is_current(attrs, path: str, cfg_hash: str, check_hash: bool) -> bool:
    """Whether stored attrs still describe ``path`` under ``cfg_hash``."""
    if attrs.get("config_hash") != cfg_hash or attrs.get("path") != str(path):
        return False
    try:
        fingerprint = source_fingerprint(path)
    except OSError:
        return False
    if all(attrs.get(k) == v for k, v in fingerprint.items()):
        return True
    return check_hash and attrs.get("source_sha1") == sha1_file(path, progress=False)


def plan_tracks(tracks: pd.DataFrame, out_path: Path, parts: Path, cfg_hash: str) -> tuple[list, list, list, set[str]]:
    """Split the manifest's tracks into kept (current in the store), resumed (current part) and to-do;
    also return every track id the store holds now."""
    kept, resumed, todo, previous = [], [], [], set()
    store = h5py.File(out_path, "r") if out_path.is_file() else None
    try:
        previous = set(store["tracks"].keys()) if store is not None else set()
        stored = store["tracks"] if store is not None and store.attrs.get("config_hash") == cfg_hash else {}
        for track_id, path in zip(tracks["track_id"], tracks["path"]):
            if track_id in stored and _is_current(stored[track_id].attrs, path, cfg_hash, check_hash=True):
                kept.append(track_id)
                continue
            part = part_path(parts, track_id)
            if part.is_file() and _part_is_current(part, track_id, path, cfg_hash):
                resumed.append(track_id)
                continue
            todo.append((track_id, path))
    finally:
        if store is not None:
            store.close()
    return kept, resumed, todo, previous


def _part_is_current(part: Path, track_id: str, path: str, cfg_hash: str) -> bool:
    try:
        with h5py.File(part, "r") as h5:
            return _is_current(h5["tracks"][track_id].attrs, path, cfg_hash, check_hash=False)
    except (OSError, KeyError):
        return False


def _backend_context(backend: str, dask_address: str | None, n_jobs: int):
    """joblib's backend: ``loky`` (local processes) or ``dask`` (a dask.distributed cluster).

    With ``dask`` and no address, a LocalCluster of ``n_jobs`` workers on loopback is started.
    """
    if backend == "loky":
        return nullcontext()
    if backend != "dask":
        raise ValueError(f"unknown backend {backend!r}: use loky or dask")
    from dask.distributed import Client, LocalCluster

    class _DaskContext:
        def __enter__(self):
            if dask_address:
                self.cluster = None
                self.client = Client(dask_address)
            else:
                workers = max(1, n_jobs if n_jobs > 0 else os.cpu_count() or 1)
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                                            dashboard_address=None)
                self.client = Client(self.cluster)
            self.config = parallel_config(backend="dask")
            self.config.__enter__()
            return self

        def __exit__(self, *exc):
            self.config.__exit__(*exc)
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()

    return _DaskContext()


def write_skipped(skipped: pd.DataFrame, path: str | Path) -> None:
    """Write a stage's skipped tracks (:data:`SKIPPED_COLUMNS`) to ``path`` (CSV), and warn when there are any."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    skipped.to_csv(path, index=False)
    if len(skipped):
        log.warning("%d tracks skipped, listed in %s", len(skipped), path)


def write_store(
    tracks: pd.DataFrame,
    out_path: str | Path,
    cfg: FeatureConfig,
    n_jobs: int,
    min_seconds: float,
    dtype: str,
    backend: str,
    dask_address: str | None,
) -> tuple[pd.DataFrame, dict]:
    """Bring the store at ``out_path`` up to date with ``tracks``.

    Tracks already in the store (same source file, same config) are kept as
    they are; finished parts of an interrupted run are reused; the rest is
    computed in parallel. Tracks no longer in ``tracks`` are dropped.

    Args:
        tracks: a manifest, or any frame with ``track_id`` and ``path`` columns.
        out_path: the HDF5 store (replaced atomically when anything changed).
        cfg: feature parameters.
        n_jobs: parallel workers (-1 for one per core).
        min_seconds: tracks shorter than this are skipped, in seconds.
        dtype: ``float32`` or ``float16`` storage.
        backend: ``loky`` or ``dask``; ``dask_address`` is a scheduler address
            (``tcp://host:8786``), or None for a LocalCluster.

    Returns:
        the skipped tracks (``track_id, path, error``) and a summary:
        ``kept, resumed, computed, skipped, removed, audio_seconds, compute_seconds, rewritten``.

    Raises:
        ValueError: ``dtype`` or ``backend`` is unknown.
        FeatureStoreError: a worker process died; finished tracks stay in the parts.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {DTYPES}")
    out_path = Path(out_path)
    parts = parts_dir(out_path)
    parts.mkdir(parents=True, exist_ok=True)
    cfg_hash = store_config_hash(cfg, dtype)
    kept, resumed, todo, previous = plan_tracks(tracks, out_path, parts, cfg_hash)
    log.info("features: %d current, %d resumed from parts, %d to compute", len(kept), len(resumed), len(todo))
    started = time.perf_counter()
    jobs = (delayed(extract_track)(t, p, cfg, dtype, str(parts), min_seconds) for t, p in todo)
    with _backend_context(backend, dask_address, n_jobs):
        statuses, skipped, computed = run_track_jobs(jobs, len(todo), n_jobs, "features", out_path, parts,
                                                     FeatureStoreError)
    compute_seconds = time.perf_counter() - started
    wanted = set(kept) | set(resumed) | set(computed)
    removed = previous - set(tracks["track_id"])
    # previous - wanted holds the removed tracks and those now stale or skipped.
    rewritten = bool(resumed or computed or previous - wanted or not out_path.is_file())
    if rewritten:
        merge_parts(out_path, parts, store_attrs(cfg, dtype, cfg_hash), kept, resumed + computed)
    summary = {
        "kept": len(kept),
        "resumed": len(resumed),
        "computed": len(computed),
        "skipped": len(skipped),
        "removed": len(removed),
        "audio_seconds": float(sum(s["seconds"] for s in statuses)),
        "compute_seconds": compute_seconds,
        "rewritten": rewritten,
    }
    log.info("features: %s", summary)
    frame = pd.DataFrame([{k: s[k] for k in SKIPPED_COLUMNS} for s in skipped], columns=list(SKIPPED_COLUMNS))
    return frame, summary


def run_track_jobs(jobs, n_todo: int, n_jobs: int, desc: str, out_path: Path, parts: Path,
                   error: type[SongfeelError]) -> tuple[list[dict], list[dict], list[str]]:
    """Run per-track jobs in joblib workers with a progress bar; shared by every per-track HDF5 store.

    Each job returns a status ``{"track_id", "path", "error", ...}`` (error '' on success) and
    writes its track's part file itself.

    Args:
        jobs: joblib ``delayed`` calls.
        n_todo: how many jobs there are (for the progress bar).
        n_jobs: worker processes.
        desc: the progress bar's label and the log's prefix.
        out_path, parts: the store and its parts folder (named in the error).
        error: the exception raised when a worker dies.

    Returns:
        ``(statuses, skipped, computed)``: every status, those with an error (each logged as a
        warning) and the track ids computed.

    Raises:
        error: a worker process died (killed, or out of memory on a long track); the store is
            unchanged and the finished parts stay for the next run.
    """
    statuses = []
    if n_todo:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
        try:
            statuses = list(tqdm(results, total=n_todo, desc=desc, unit="track"))
        except BrokenExecutor as exc:
            finished = len(list(parts.glob("*.h5")))
            raise error(f"{out_path}: a worker died (killed, or out of memory on a long track): {exc}; "
                        f"the store is unchanged and {finished} finished tracks wait in {parts}; rerun to resume") from exc
    skipped = [s for s in statuses if s["error"]]
    for status in skipped:
        log.warning("%s skipped %s (%s): %s", desc, status["track_id"], status["path"], status["error"])
    return statuses, skipped, [s["track_id"] for s in statuses if not s["error"]]


def store_attrs(cfg: FeatureConfig, dtype: str, cfg_hash: str) -> dict:
    """The root attributes of a feature store: feature version, config hash, dtype and every feature parameter."""
    return {"feature_version": FEATURE_VERSION, "config_hash": cfg_hash, "dtype": dtype,
            **{key: np.nan if value is None else value for key, value in cfg.to_dict().items()}}


def merge_parts(out_path: Path, parts: Path, root_attrs: dict, kept: list[str], new: list[str]) -> None:
    """Write the kept tracks of the old store plus the new part files into a new store, then swap it in
    atomically and remove the merged parts. Shared by every per-track HDF5 store (features, teacher targets).

    Args:
        out_path: the store; ``kept`` are read from it before it is replaced.
        parts: the folder of part files (:func:`part_path`).
        root_attrs: the new store's root attributes (``config_hash`` among them).
        kept, new: track ids copied from the old store and from the parts.
    """
    tmp = out_path.with_name(out_path.name + ".tmp")
    with h5py.File(tmp, "w") as h5:
        h5.attrs.update(root_attrs)
        root = h5.create_group("tracks")
        if kept:
            with h5py.File(out_path, "r") as old:
                for track_id in tqdm(kept, desc="merge kept", unit="track", leave=False):
                    old.copy(old["tracks"][track_id], root, name=track_id)
        for track_id in tqdm(new, desc="merge parts", unit="track", leave=False):
            with h5py.File(part_path(parts, track_id), "r") as part:
                part.copy(part["tracks"][track_id], root, name=track_id)
    os.replace(tmp, out_path)
    for track_id in new:
        part_path(parts, track_id).unlink(missing_ok=True)
    for stale in parts.glob("*.tmp-*"):
        stale.unlink(missing_ok=True)
    log.info("wrote %d tracks to %s", len(kept) + len(new), out_path)


class TrackStore:
    """Read access to a per-track HDF5 store (``/tracks/<track_id>/``). Use as a context manager.

    Args:
        path: the store.
        missing: what to run when it does not exist, for the error message.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it and ``missing``).
    """

    def __init__(self, path: str | Path, missing: str = "run its stage") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: store not found ({missing})")
        self._h5 = h5py.File(self.path, "r")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._h5.close()

    @property
    def track_ids(self) -> list[str]:
        return sorted(self._h5["tracks"].keys())

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._h5["tracks"]

    def attrs(self, track_id: str) -> dict:
        """The attributes of one track (source path, SHA1, ...).

        Raises:
            KeyError: the track is not stored.
        """
        return dict(self._h5["tracks"][track_id].attrs)


class FeatureStore(TrackStore):
    """Read access to a feature store. Use as a context manager.

    Example::

        with FeatureStore("data/features.h5") as store:
            frames = store.logmel("demo:calm_acoustic_1", 0, 430)  # (430, n_mels) float32
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "run stage 02")
        attrs = dict(self._h5.attrs)
        if int(attrs.get("feature_version", -1)) != FEATURE_VERSION:
            raise ValueError(f"{self.path}: feature version {attrs.get('feature_version')} != {FEATURE_VERSION}")
        fmax = attrs.get("fmax")
        attrs["fmax"] = None if fmax is None or np.isnan(fmax) else float(fmax)
        self.config = FeatureConfig.from_mapping(
            {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
        )
        self.dtype = str(attrs.get("dtype", "float32"))

    def n_frames(self, track_id: str) -> int:
        """Number of stored frames of ``track_id``."""
        return int(self._h5["tracks"][track_id]["logmel"].shape[0])

    def logmel(self, track_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Log-mel frames ``[start, stop)`` of a track, shape (n_frames, n_mels), dB, float32."""
        return self._h5["tracks"][track_id]["logmel"][start:stop].astype(np.float32, copy=False)

    def mfcc(self, track_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """MFCC frames ``[start, stop)`` of a track, shape (n_frames, n_mfcc), float32."""
        return self._h5["tracks"][track_id]["mfcc"][start:stop].astype(np.float32, copy=False)

    def frame_counts(self, track_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Number of frames per track."""
        ids = self.track_ids if track_ids is None else track_ids
        return {t: self.n_frames(t) for t in ids}
