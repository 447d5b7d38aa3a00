"""The HDF5 feature store written by stage 02 and read by every later stage.

Layout (one file)::

    /                       attrs: feature_version, sample_rate, hop_length, n_fft,
                                   n_mels, n_mfcc, fmin, fmax, amin
    /tracks/<track_id>/     attrs: path, duration_seconds, n_samples
        logmel              float32 (n_frames, n_mels), dB, chunked and lzf-compressed
        mfcc                float32 (n_frames, n_mfcc)

Frames are stored once per track. Patches (windows of frames, chunked or
sliding) are views taken at read time, so random patches need not load whole
tracks. The store is written by a single writer into a temporary file that is
renamed into place, so a crashed run never leaves a half-written store behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import AudioError
from songfeel.features import FEATURE_VERSION, FeatureConfig, log_mel, mfcc

log = logging.getLogger(__name__)

SKIPPED_COLUMNS = ("track_id", "path", "error")
_CHUNK_FRAMES = 256


@dataclass
class TrackFeatures:
    """Features of one track, as computed by a worker."""

    track_id: str
    path: str
    n_samples: int
    logmel: np.ndarray
    mfcc: np.ndarray


def compute_track(track_id: str, path: str, cfg: FeatureConfig, min_seconds: float) -> TrackFeatures:
    """Decode one track and compute its log-mel and MFCC.

    Raises:
        AudioError: the track cannot be decoded, is too short or is silent.
    """
    samples = load_audio(path, sample_rate=cfg.sample_rate, min_seconds=max(min_seconds, cfg.n_fft / cfg.sample_rate))
    logmel = log_mel(samples, cfg)
    return TrackFeatures(track_id, path, int(samples.shape[0]), logmel, mfcc(logmel, cfg))


def _safe_compute(track_id: str, path: str, cfg: FeatureConfig, min_seconds: float):
    try:
        return compute_track(track_id, path, cfg, min_seconds)
    except AudioError as exc:
        return {"track_id": track_id, "path": path, "error": f"{type(exc).__name__}: {exc.cause}"}


def write_store(
    tracks: pd.DataFrame,
    out_path: str | Path,
    cfg: FeatureConfig,
    n_jobs: int = 1,
    min_seconds: float = 1.0,
) -> pd.DataFrame:
    """Compute features for every track in parallel and write them to ``out_path``.

    Workers (joblib, loky backend) decode and compute; the calling process is the
    only HDF5 writer. Results stream back as they finish, so memory does not grow
    with the number of tracks.

    Args:
        tracks: a manifest, or any frame with ``track_id`` and ``path`` columns.
        out_path: the HDF5 file to create (replaced atomically).
        cfg: feature parameters.
        n_jobs: joblib workers (-1 for one per core).
        min_seconds: tracks shorter than this are skipped, in seconds.

    Returns:
        the skipped tracks, columns ``track_id, path, error``.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(out_path.name + ".tmp")
    skipped = []
    jobs = (delayed(_safe_compute)(t, p, cfg, min_seconds) for t, p in zip(tracks["track_id"], tracks["path"]))
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
    with h5py.File(tmp_path, "w") as h5:
        h5.attrs["feature_version"] = FEATURE_VERSION
        for key, value in cfg.to_dict().items():
            h5.attrs[key] = np.nan if value is None else value
        root = h5.create_group("tracks")
        for result in tqdm(results, total=len(tracks), desc="features", unit="track"):
            if isinstance(result, dict):
                log.warning("skipped %s (%s): %s", result["track_id"], result["path"], result["error"])
                skipped.append(result)
                continue
            _write_track(root, result)
    os.replace(tmp_path, out_path)
    log.info("wrote features of %d tracks to %s, skipped %d", len(tracks) - len(skipped), out_path, len(skipped))
    return pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))


def _write_track(root: h5py.Group, track: TrackFeatures) -> None:
    group = root.create_group(track.track_id)
    group.attrs["path"] = track.path
    group.attrs["n_samples"] = track.n_samples
    for name, array in (("logmel", track.logmel), ("mfcc", track.mfcc)):
        chunks = (min(_CHUNK_FRAMES, array.shape[0]), array.shape[1])
        group.create_dataset(name, data=array, chunks=chunks, compression="lzf")


class FeatureStore:
    """Read access to a feature store. Use as a context manager.

    Example::

        with FeatureStore("data/features.h5") as store:
            frames = store.logmel("demo:calm_acoustic_1", 0, 430)  # (430, n_mels)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: feature store not found (run stage 02)")
        self._h5 = h5py.File(self.path, "r")
        attrs = dict(self._h5.attrs)
        if int(attrs.get("feature_version", -1)) != FEATURE_VERSION:
            raise ValueError(f"{self.path}: feature version {attrs.get('feature_version')} != {FEATURE_VERSION}")
        fmax = attrs.get("fmax")
        attrs["fmax"] = None if fmax is None or np.isnan(fmax) else float(fmax)
        self.config = FeatureConfig.from_mapping(
            {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
        )

    def __enter__(self) -> "FeatureStore":
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

    def n_frames(self, track_id: str) -> int:
        """Number of stored frames of ``track_id``."""
        return int(self._h5["tracks"][track_id]["logmel"].shape[0])

    def logmel(self, track_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Log-mel frames ``[start, stop)`` of a track, shape (n_frames, n_mels), dB."""
        return self._h5["tracks"][track_id]["logmel"][start:stop]

    def mfcc(self, track_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """MFCC frames ``[start, stop)`` of a track, shape (n_frames, n_mfcc)."""
        return self._h5["tracks"][track_id]["mfcc"][start:stop]

    def frame_counts(self, track_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Number of frames per track."""
        ids = self.track_ids if track_ids is None else track_ids
        return {t: self.n_frames(t) for t in ids}
