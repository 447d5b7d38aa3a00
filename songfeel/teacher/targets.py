"""Teacher targets: the teacher's per-patch outputs of every track, cached once in HDF5.

Layout of the store (one HDF5 file, written like the feature store: per-track part
files in ``<store>.parts/``, merged atomically; see :mod:`songfeel.store`)::

    /                       attrs: config_hash, teacher_model, outputs (JSON list), widths (JSON),
                                   patch_seconds, patch_hop_seconds, target_lufs, sample_rate
    /tracks/<track_id>/     attrs: path, source_sha1, source_size, source_mtime_ns,
                                   duration_seconds, config_hash
        patch_start_seconds (n_patches,) float64: each 3 s patch's start, seconds
        <output>            (n_patches, width) float32, e.g. tags (50) and pool5 (256)

Computing the targets (:mod:`songfeel.teacher.stage`) imports TensorFlow in its workers;
reading them (this module: :class:`TeacherTargets`, :class:`CropTargets`) needs only h5py
and numpy, so training, evaluation and export never import TensorFlow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from songfeel.store import TrackStore

log = logging.getLogger(__name__)

#: Seconds per teacher patch (musicnn's 187 frames of 256 samples at 16 kHz, centred).
PATCH_SECONDS = 3.0


class TeacherTargets(TrackStore):
    """Read access to a teacher-target store; use as a context manager.

    Attributes:
        outputs: the stored outputs, in order (e.g. ``["tags", "pool5"]``).
        widths: output -> width.
        model: the teacher model's name.

    Raises:
        FileNotFoundError: the store does not exist.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, "run 02_teacher_targets.py")
        self.outputs = list(json.loads(self._h5.attrs["outputs"]))
        self.widths = {k: int(v) for k, v in json.loads(self._h5.attrs["widths"]).items()}
        self.model = str(self._h5.attrs["teacher_model"])

    def patches(self, track_id: str, outputs: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(patch_start_seconds (n_patches,), targets (n_patches, sum of widths))``: the chosen outputs side by side.

        Raises:
            KeyError: the track or an output is not stored.
        """
        if track_id not in self:
            raise KeyError(f"{self.path}: track {track_id!r} has no teacher targets")
        group = self._h5["tracks"][track_id]
        names = list(outputs or self.outputs)
        return group["patch_start_seconds"][()], np.concatenate([group[n][()] for n in names], axis=1).astype(np.float32)


def pool_patches(starts: np.ndarray, targets: np.ndarray, start_seconds: float, stop_seconds: float) -> np.ndarray:
    """The teacher's view of one crop: the mean of the patches whose centres lie in ``[start, stop]`` seconds.

    A crop shorter than the patch hop may hold no centre: then the patch whose centre is
    nearest the crop's centre stands for it.

    Args:
        starts: (n_patches,) patch starts, seconds (each patch lasts :data:`PATCH_SECONDS`).
        targets: (n_patches, dim) per-patch targets.
        start_seconds, stop_seconds: the crop, seconds.

    Returns:
        (dim,) float32.
    """
    centres = np.asarray(starts) + PATCH_SECONDS / 2
    inside = (centres >= start_seconds) & (centres <= stop_seconds)
    if inside.any():
        return targets[inside].mean(axis=0)
    return targets[int(np.argmin(np.abs(centres - (start_seconds + stop_seconds) / 2)))]


class CropTargets:
    """Teacher targets of crops, z-scored with the training tracks' patch statistics; picklable for DataLoader workers.

    Args:
        store_path: the teacher-target store.
        track_ids: tracks to load (all their patches are held in memory: 306 floats per
            1.5 s of audio with MTT_vgg's tags and pool5, about 3 MB per hour).
        train_ids: tracks whose patches give the z-score statistics (the training split).
        frame_seconds: seconds per frame of the student's features (hop length / sample rate).
        outputs: which outputs (default: all stored).

    Attributes:
        dim: width of a target.
    """

    def __init__(self, store_path: str | Path, track_ids: Sequence[str], train_ids: Sequence[str],
                 frame_seconds: float, outputs: Sequence[str] | None = None, min_std: float = 1e-3) -> None:
        self.frame_seconds = float(frame_seconds)
        self.tracks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with TeacherTargets(store_path) as store:
            for track_id in track_ids:
                if track_id in store:
                    self.tracks[track_id] = store.patches(track_id, outputs)
        train = [self.tracks[t][1] for t in train_ids if t in self.tracks]
        if not train:
            raise ValueError(f"{store_path}: none of the {len(train_ids)} training tracks has teacher targets")
        stacked = np.concatenate(train)
        self.mean, self.std = stacked.mean(axis=0), np.maximum(stacked.std(axis=0), min_std)
        self.dim = int(stacked.shape[1])
        missing = len(set(track_ids) - set(self.tracks))
        if missing:
            log.warning("%d of %d tracks have no teacher targets; their crops are not distilled", missing, len(track_ids))

    def __call__(self, track_id: str, offset_frames: int, n_frames: int) -> np.ndarray | None:
        """The z-scored (dim,) target of the crop ``[offset, offset + n_frames)`` (student frames); None without targets."""
        if track_id not in self.tracks:
            return None
        starts, targets = self.tracks[track_id]
        start = offset_frames * self.frame_seconds
        pooled = pool_patches(starts, targets, start, start + n_frames * self.frame_seconds)
        return self.standardise(pooled).astype(np.float32)

    def standardise(self, targets: np.ndarray) -> np.ndarray:
        """``targets`` (..., dim) z-scored with the training tracks' patch statistics (float64)."""
        return (targets - self.mean) / self.std


def teacher_song_vectors(store_path: str | Path, track_ids: Sequence[str], train_ids: Sequence[str],
                         outputs: Sequence[str] | None = None) -> pd.DataFrame:
    """The teacher as a whole-song embedder: each song's mean over its patches of the z-scored targets.

    The z-score uses the mean and standard deviation of the training tracks' patches, so
    every teacher dimension weighs the same in a Euclidean distance.

    Args:
        store_path: the teacher-target store.
        track_ids: the songs to embed (those without targets are left out).
        train_ids: the training tracks, for the z-score.
        outputs: which outputs (default: all stored).

    Returns:
        float64 DataFrame (n_songs, dim) indexed by ``track_id``.

    Raises:
        ValueError: no training track has targets.
    """
    targets = CropTargets(store_path, list(dict.fromkeys([*track_ids, *train_ids])), train_ids, 1.0, outputs)
    rows = {t: targets.standardise(targets.tracks[t][1]).mean(axis=0) for t in track_ids
            if t in targets.tracks}
    return pd.DataFrame(np.stack(list(rows.values())) if rows else np.zeros((0, targets.dim)),
                        index=pd.Index(list(rows), name="track_id"), dtype=np.float64)


def teacher_cost(store_path: str | Path) -> dict:
    """The teacher's size and speed as the teacher stage measured them: ``n_parameters`` and
    ``x_real_time_per_core`` (seconds of audio per second on one core, decoding included)."""
    with h5py.File(store_path, "r") as h5:
        return {"model": str(h5.attrs["teacher_model"]), "n_parameters": float(h5.attrs.get("n_parameters", np.nan)),
                "x_real_time_per_core": float(h5.attrs.get("x_real_time_per_core", np.nan))}


__all__ = ["CropTargets", "PATCH_SECONDS", "TeacherTargets", "pool_patches", "teacher_cost", "teacher_song_vectors"]
