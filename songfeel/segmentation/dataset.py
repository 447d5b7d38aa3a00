"""SSM-Net's data: medleys cut from a manifest's songs, and songs as SSM-Net's inputs and targets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import ManifestError
from songfeel.segmentation import groundtruth
from songfeel.segmentation.annotations import Segmentation, load_jams
from songfeel.segmentation.config import feature_config, section
from songfeel.segmentation.features import (
    patch_times,
    patches,
    structure_features,
)
from songfeel.segmentation.medleys import MedleySampler, build_splits

log = logging.getLogger(__name__)

#: Version tag stored in checkpoints written by :func:`save_ssmnet`.


class StructureSong(NamedTuple):
    """One annotated song on SSM-Net's frame grid (the first three fields are a ``train_ssmnet`` song).

    Attributes:
        patches: float32 (n_patches, patch_steps, n_mels).
        ssm: float32 (n_patches, n_patches) ground-truth SSM, in {0, 1}.
        novelty: float32 (n_patches,) ground-truth novelty, in [0, 1].
        reference: the annotation.
        times: float64 (n_patches,) patch centre times in seconds.
        song_id: the medley id.
    """

    patches: np.ndarray
    ssm: np.ndarray
    novelty: np.ndarray
    reference: Segmentation
    times: np.ndarray
    song_id: str


def build_medley_benchmark(manifest: pd.DataFrame, out_dir: str | Path, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut medleys from the songs of a songfeel manifest, split by the manifest's own split.

    For each ``manifest split -> medley split`` of ``cfg.medleys.split_names`` with
    ``cfg.medleys.n[medley split] > 0``, the songs of that manifest split are the
    sources of :func:`~songfeel.segmentation.medleys.build_medleys`, written to
    ``out_dir/<medley split>``; split ``k`` (in ``split_names`` order) is seeded with
    ``cfg.medleys.seed + 1000 (k + 1)``. Songs of splits not in ``split_names`` are
    ignored (logged).

    Args:
        manifest: a songfeel manifest (:mod:`songfeel.manifest`); needs ``path`` and ``split``.
        out_dir: output folder; stale files of an earlier run are not removed.
        cfg: the ``structure`` config; reads ``medleys``.

    Returns:
        the medley manifest (columns :data:`~songfeel.segmentation.medleys.MANIFEST_COLUMNS`) and the
        skipped sources (``path, error, split``), also written as ``manifest.csv`` and
        ``skipped.csv`` in ``out_dir``.

    Raises:
        ManifestError: ``path`` or ``split`` is missing, or one path is in two splits.
        ValueError: a medley split with ``n > 0`` has no source songs or no usable one,
            or ``n`` names a split that ``split_names`` does not produce.
    """
    options = section(cfg, "medleys")
    split_names: dict[str, str] = dict(options["split_names"])
    counts = {name: int(n or 0) for name, n in dict(options["n"]).items()}
    missing = [column for column in ("path", "split") if column not in manifest.columns]
    if missing:
        raise ManifestError(f"manifest lacks columns {missing}")
    unknown = sorted(set(counts) - set(split_names.values()))
    if unknown:
        raise ValueError(f"medleys.n names splits {unknown} that medleys.split_names {split_names} does not produce")
    shared = manifest.groupby("path")["split"].nunique()
    if (shared > 1).any():
        raise ManifestError(f"paths in more than one split: {sorted(shared[shared > 1].index)[:5]}")
    ignored = manifest[~manifest["split"].isin(list(split_names))]
    if len(ignored):
        log.warning("structure: ignoring %d songs of splits %s", len(ignored), sorted(set(ignored["split"])))
    out_dir = Path(out_dir)
    sources = {source_split: sorted(manifest.loc[manifest["split"] == source_split, "path"].astype(str))
               for source_split in split_names}
    for source_split, medley_split in split_names.items():  # fail before building anything
        if counts.get(medley_split, 0) and not sources[source_split]:
            raise ValueError(f"the manifest has no {source_split!r} songs for the {counts[medley_split]} "
                             f"{medley_split} medleys")
    # medley split -> its sources, in split_names order (which fixes each split's seed)
    by_medley_split = {medley_split: sources[source_split] for source_split, medley_split in split_names.items()}
    return build_splits(by_medley_split, out_dir, counts, int(options["seed"]), **medley_options(cfg))


def medley_options(cfg) -> dict:
    """The keyword arguments of :func:`~songfeel.segmentation.medleys.build_medleys` from ``cfg.medleys``."""
    options = section(cfg, "medleys")
    return {
        "sample_rate": int(options["sample_rate"]),
        **_medley_shape(options),
        "crossfade_seconds": float(options["crossfade_seconds"]),
        "audio_format": str(options["audio_format"]),
    }


def _medley_shape(medleys: dict) -> dict:
    """What written and fresh medleys share from ``cfg.medleys``: sections, their lengths, reuse and repeats."""
    return {
        "n_sections": tuple(int(n) for n in medleys["n_sections"]),
        "section_seconds": tuple(float(s) for s in medleys["section_seconds"]),
        "same_song_probability": float(medleys["same_song_probability"]),
        "repeat_probability": float(medleys["repeat_probability"]),
    }


def song_arrays(audio: np.ndarray, reference: Segmentation, cfg, song_id: str = "") -> StructureSong:
    """SSM-Net's input and targets for one annotated song.

    Args:
        audio: mono samples at ``cfg.features.sample_rate`` Hz, shape (n_samples,).
        reference: the song's annotation.
        cfg: the ``structure`` config; reads ``features`` and ``train.novelty_sigma_seconds``.
        song_id: name kept in the result and used in errors.

    Raises:
        ValueError: the audio is silent or shorter than one patch (the message names ``song_id``).
    """
    features = feature_config(cfg)
    sigma = float(section(cfg, "train")["novelty_sigma_seconds"])
    try:
        song_patches = patches(structure_features(audio, features), features)
    except ValueError as exc:
        raise ValueError(f"{song_id or '<audio>'}: {exc}") from exc
    times = patch_times(len(song_patches), features)
    return StructureSong(song_patches, groundtruth.ssm(reference, times),
                         groundtruth.boundary_novelty(reference, times, sigma), reference, times, song_id)


def load_medley_songs(medley_manifest: pd.DataFrame, cfg, progress: bool = True) -> list[StructureSong]:
    """Decode each medley and its JAMS into a :class:`StructureSong`, in manifest order.

    Args:
        medley_manifest: rows with ``medley_id, audio_path, jams_path`` (from :func:`build_medley_benchmark`).
        cfg: the ``structure`` config; reads ``features`` and ``train.novelty_sigma_seconds``.
        progress: show a tqdm bar.

    Returns:
        one :class:`StructureSong` per row (patches ``(n, patch_steps, n_mels)``, SSM ``(n, n)``,
        novelty ``(n,)``, reference, times ``(n,)`` in seconds, id).

    Raises:
        songfeel.errors.AudioError: a medley cannot be decoded.
        ValueError: a JAMS file is unreadable, or a medley is silent or too short.
    """
    sample_rate = feature_config(cfg).sample_rate
    songs = []
    for row in tqdm(medley_manifest.itertuples(index=False), total=len(medley_manifest), desc="load medleys",
                    unit="medley", disable=not progress):
        audio = load_audio(row.audio_path, sample_rate)
        songs.append(song_arrays(audio, load_jams(row.jams_path), cfg, str(row.medley_id)))
    return songs


def medley_sampler(source_paths: Sequence[str | Path], cfg, progress: bool = True) -> MedleySampler:
    """A :class:`~songfeel.segmentation.medleys.MedleySampler` over ``source_paths`` for training.

    Medley shape (sections, lengths, repeats, same-song sections) comes from
    ``cfg.medleys``, the augmentations from ``cfg.train.augment`` (``crossfade_seconds``
    range, ``gain_db``) and the seed from ``cfg.train.seed``; the sample rate is the
    front end's.

    Raises:
        ValueError: as :class:`~songfeel.segmentation.medleys.MedleySampler`.
    """
    return MedleySampler(source_paths, **sampler_options(cfg), progress=progress)


def sampler_options(cfg) -> dict:
    """The keyword arguments of :class:`~songfeel.segmentation.medleys.MedleySampler` (all but ``progress``):
    medley shape from ``cfg.medleys``, augmentations from ``cfg.train.augment``, seed from ``cfg.train.seed``
    and the front end's sample rate."""
    medleys, options = section(cfg, "medleys"), section(cfg, "train")
    augment = options["augment"]
    return {
        "sample_rate": feature_config(cfg).sample_rate,
        **_medley_shape(medleys),
        "crossfade_seconds": tuple(float(s) for s in augment["crossfade_seconds"]),
        "gain_db": float(augment["gain_db"]),
        "seed": int(options["seed"]),
    }


def fresh_songs(sampler: MedleySampler, epoch: int, n: int, cfg) -> list[StructureSong]:
    """``n`` medleys of ``sampler`` for ``epoch`` (keys ``(epoch, 0..n-1)``) on SSM-Net's frame grid.

    A medley that cannot be drawn or turned into patches (all its draws silent, say) is
    logged and left out, so an epoch may hold fewer than ``n``.
    """
    songs = []
    for index in range(n):
        try:
            audio, reference = sampler.draw((epoch, index))
            songs.append(song_arrays(audio, reference, cfg, reference.source))
        except ValueError as exc:
            log.warning("structure: skipping fresh medley (%d, %d): %s", epoch, index, exc)
    return songs


def medley_songs(medleys: pd.DataFrame) -> pd.DataFrame:
    """Medley manifest rows (``medley_id, audio_path, jams_path``) as a song table of :func:`evaluate_songs`."""
    return pd.DataFrame({"song_id": medleys["medley_id"].astype(str), "audio_path": medleys["audio_path"],
                         "annotation_path": medleys["jams_path"], "format": "jams"})
