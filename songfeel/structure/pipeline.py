"""The structure stage: medleys -> SSM-Net training -> segmentation -> scores against the baselines.

Each function takes the ``structure`` config group (``conf/structure/default.yaml``, a
dict or OmegaConf node) and reads only its own sections:

1. :func:`build_medley_benchmark` cuts medleys from a songfeel manifest's songs,
   keeping the manifest's own train/val/test split of the source songs
   (``medleys.split_names`` maps ``val`` to ``validation``), so that the medley
   splits are disjoint by song and agree with the embedding benchmark's.
2. :func:`load_medley_songs` turns each medley into SSM-Net's input and targets
   on the SSM frame grid (:func:`~songfeel.structure.features.patch_times`).
3. :func:`train_structure_model` trains SSM-Net (Peeters, ISMIR 2023,
   arXiv 2309.02243) and keeps the epoch with the best validation score;
   :func:`load_structure_model` reads the checkpoint back.
4. :func:`segment_audio` segments any audio; :func:`evaluate_structure` scores
   SSM-Net, Foote (MFCC, log-mel) and Laplacian segmentation on the same test
   medleys, with bootstrap confidence intervals over songs (:func:`summarize`),
   a Markdown table (:func:`summary_markdown`) and flat metrics (:func:`structure_metrics`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import soxr
import torch
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.averaging import weight_average
from songfeel.errors import AudioError, ManifestError
from songfeel.metrics.triplet import bootstrap_ci as triplet_bootstrap_ci
from songfeel.structure import groundtruth
from songfeel.structure.annotations import Segmentation, load_annotation, load_jams
from songfeel.structure.baselines import foote_segmentation, laplacian_segmentation
from songfeel.structure.evaluation import SCORE_KEYS, score
from songfeel.structure.features import (
    StructureFeatureConfig,
    patch_times,
    patches,
    step_start_times,
    structure_features,
)
from songfeel.structure.medleys import MedleySampler, build_splits
from songfeel.structure.peaks import detect_boundaries, label_segments, peak_settings
from songfeel.structure.ssmnet import (
    SSMNet,
    SSMNetConfig,
    SSMNetOutput,
    SSMNetTrainConfig,
    novelty_loss,
    ssm_loss,
    total_loss,
    train_step,
)

log = logging.getLogger(__name__)

#: Version tag stored in checkpoints written by :func:`save_structure_model`.
CHECKPOINT_FORMAT = "songfeel.structure.ssmnet/1"

#: Columns of :func:`score_methods`'s table, before the :data:`~songfeel.structure.evaluation.SCORE_KEYS`.
PER_SONG_COLUMNS = ("method", "song_id", "n_boundaries_reference", "n_boundaries_estimate")

#: Scores whose mean gets a bootstrap 95 % confidence interval in :func:`summarize`.
CI_KEYS = ("hr_0_5f_trim", "hr_3f_trim", "hr_0_5f", "hr_3f")

#: Epoch selection rules of :func:`train_structure_model`.
SELECT_BY = ("val_hr_3f", "val_hr_mean", "val_tuned", "val_loss")


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


@dataclass(frozen=True)
class SegmentDetails:
    """What :func:`segment_audio` computed, for plots.

    Attributes:
        times: float64 (n_patches,) SSM frame times in seconds (patch centres).
        ssm: float32 (n_patches, n_patches) estimated SSM, in [0, 1].
        novelty: float32 (n_patches,) estimated novelty curve, in [0, 1].
        embeddings: float32 (n_patches, embedding_dim), unit L2 norm.
        boundaries: float64 (n_boundaries,) picked boundaries in seconds.
        duration: the audio's duration in seconds.
    """

    times: np.ndarray
    ssm: np.ndarray
    novelty: np.ndarray
    embeddings: np.ndarray
    boundaries: np.ndarray
    duration: float


# --- configuration ------------------------------------------------------------------------------


def _section(cfg, name: str) -> dict:
    """``cfg[name]`` as a plain dict (an OmegaConf node is resolved section by section)."""
    if name not in cfg:
        raise KeyError(f"structure config has no {name!r} section")
    node = cfg[name]
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return copy.deepcopy(dict(node))


def feature_config(cfg) -> StructureFeatureConfig:
    """SSM-Net's front end from ``cfg.features``."""
    return StructureFeatureConfig.from_mapping(_section(cfg, "features"))


def model_config(cfg) -> SSMNetConfig:
    """SSM-Net's architecture from ``cfg.model``, with the patch shape and hop taken from ``cfg.features``.

    Raises:
        ValueError: ``cfg.model`` sets ``n_mels``, ``patch_steps`` or ``patch_hop_seconds``
            to a value other than the front end's.
    """
    features = feature_config(cfg)
    derived = {"n_mels": features.n_mels, "patch_steps": features.patch_steps,
               "patch_hop_seconds": features.patch_hop_seconds}
    model = _section(cfg, "model")
    for key, value in derived.items():
        if key in model and not math.isclose(float(model[key]), float(value), rel_tol=1e-9):
            raise ValueError(f"model.{key} = {model[key]} disagrees with the features' {value}")
    return SSMNetConfig.from_mapping({**model, **derived})


def train_config(cfg) -> SSMNetTrainConfig:
    """Optimiser and loss knobs from ``cfg.train``."""
    return SSMNetTrainConfig.from_mapping(_section(cfg, "train"))


# --- 1. medleys ---------------------------------------------------------------------------------


def build_medley_benchmark(manifest: pd.DataFrame, out_dir: str | Path, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut medleys from the songs of a songfeel manifest, split by the manifest's own split.

    For each ``manifest split -> medley split`` of ``cfg.medleys.split_names`` with
    ``cfg.medleys.n[medley split] > 0``, the songs of that manifest split are the
    sources of :func:`~songfeel.structure.medleys.build_medleys`, written to
    ``out_dir/<medley split>``; split ``k`` (in ``split_names`` order) is seeded with
    ``cfg.medleys.seed + 1000 (k + 1)``. Songs of splits not in ``split_names`` are
    ignored (logged).

    Args:
        manifest: a songfeel manifest (:mod:`songfeel.manifest`); needs ``path`` and ``split``.
        out_dir: output folder; stale files of an earlier run are not removed.
        cfg: the ``structure`` config; reads ``medleys``.

    Returns:
        the medley manifest (columns :data:`~songfeel.structure.medleys.MANIFEST_COLUMNS`) and the
        skipped sources (``path, error, split``), also written as ``manifest.csv`` and
        ``skipped.csv`` in ``out_dir``.

    Raises:
        ManifestError: ``path`` or ``split`` is missing, or one path is in two splits.
        ValueError: a medley split with ``n > 0`` has no source songs or no usable one,
            or ``n`` names a split that ``split_names`` does not produce.
    """
    options = _section(cfg, "medleys")
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
    medley_options = {
        "sample_rate": int(options["sample_rate"]),
        "n_sections": tuple(int(n) for n in options["n_sections"]),
        "section_seconds": tuple(float(s) for s in options["section_seconds"]),
        "crossfade_seconds": float(options["crossfade_seconds"]),
        "same_song_probability": float(options["same_song_probability"]),
        "repeat_probability": float(options["repeat_probability"]),
        "audio_format": options.get("audio_format", "flac"),
    }
    sources = {source_split: sorted(manifest.loc[manifest["split"] == source_split, "path"].astype(str))
               for source_split in split_names}
    for source_split, medley_split in split_names.items():  # fail before building anything
        if counts.get(medley_split, 0) and not sources[source_split]:
            raise ValueError(f"the manifest has no {source_split!r} songs for the {counts[medley_split]} "
                             f"{medley_split} medleys")
    # medley split -> its sources, in split_names order (which fixes each split's seed)
    by_medley_split = {medley_split: sources[source_split] for source_split, medley_split in split_names.items()}
    return build_splits(by_medley_split, out_dir, counts, int(options["seed"]), **medley_options)


# --- 2. songs on the SSM frame grid ---------------------------------------------------------------


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
    sigma = float(_section(cfg, "train").get("novelty_sigma_seconds", 1.0))
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


# --- 3. training ------------------------------------------------------------------------------------


def medley_sampler(source_paths: Sequence[str | Path], cfg, progress: bool = True) -> MedleySampler:
    """A :class:`~songfeel.structure.medleys.MedleySampler` over ``source_paths`` for training.

    Medley shape (sections, lengths, repeats, same-song sections) comes from
    ``cfg.medleys``, the augmentations from ``cfg.train.augment`` (``crossfade_seconds``
    range, ``gain_db``) and the seed from ``cfg.train.seed``; the sample rate is the
    front end's.

    Raises:
        ValueError: as :class:`~songfeel.structure.medleys.MedleySampler`.
    """
    medleys, options = _section(cfg, "medleys"), _section(cfg, "train")
    augment = dict(options.get("augment") or {})
    crossfade = augment.get("crossfade_seconds", [medleys["crossfade_seconds"]] * 2)
    return MedleySampler(
        source_paths, sample_rate=feature_config(cfg).sample_rate,
        n_sections=tuple(medleys["n_sections"]), section_seconds=tuple(medleys["section_seconds"]),
        crossfade_seconds=tuple(crossfade), same_song_probability=float(medleys["same_song_probability"]),
        repeat_probability=float(medleys["repeat_probability"]), gain_db=float(augment.get("gain_db", 0.0)),
        seed=int(options.get("seed", 0)), progress=progress,
    )


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


def train_structure_model(train_songs: Sequence[StructureSong], val_songs: Sequence[StructureSong], cfg,
                          out_path: str | Path, progress: bool = True,
                          sampler: MedleySampler | None = None) -> pd.DataFrame:
    """Train SSM-Net and save the epoch with the best validation score as a checkpoint.

    The loop is that of :func:`~songfeel.structure.ssmnet.train_ssmnet` (seeded song
    order, ``cfg.train.batch_size`` songs per AdamW step, ``alpha * ssm + (1 - alpha) *
    novelty`` loss, gradient clipping) with one optimiser state across all epochs
    (``train_ssmnet`` starts a new optimiser each call, so it is not called per epoch).
    With a ``sampler``, every epoch also trains on ``cfg.train.fresh_medleys`` medleys
    drawn for that epoch (:func:`fresh_songs`): new sections, patterns, crossfades and
    levels each time, which keeps SSM-Net from memorising the few written medleys.
    After each epoch the model segments every validation song as :func:`segment_audio`
    does (``cfg.eval.ssmnet`` peak picking) and the epoch is kept when it is better by
    ``cfg.train.select_by``: ``val_hr_3f``, the mean trimmed HR3F, or ``val_hr_mean``, the
    mean of trimmed HR.5F and HR3F, or ``val_tuned``, that mean with the best peak picking
    of the ``cfg.eval.tune.grid`` (as stage 05 will use; local refinement off), with ties
    going to the lower validation loss; or ``val_loss``. Without validation songs the last
    epoch is kept. With ``cfg.train.ema_decay`` (per step, e.g. 0.995), validation and the
    checkpoint use an exponential moving average of the weights
    (:func:`songfeel.averaging.weight_average`), which smooths the epoch-to-epoch swings that
    make a single epoch's weights a noisy choice.

    Args:
        train_songs: training songs (:func:`load_medley_songs`).
        val_songs: validation songs, possibly empty.
        cfg: the ``structure`` config; reads ``features``, ``model``, ``train`` and ``eval.ssmnet``.
        out_path: the checkpoint to write (:func:`save_structure_model`).
        progress: show a tqdm bar.
        sampler: fresh training medleys (:func:`medley_sampler`), or None for the written ones only.

    Returns:
        one row per epoch: ``epoch, ssm_loss, novelty_loss, total_loss`` (training means),
        ``val_ssm_loss, val_novelty_loss, val_loss, val_hr_0_5f, val_hr_3f`` (trimmed hit
        rates), ``val_tuned`` (the grid's best mean of the two; NaN without ``eval.tune``;
        all NaN without validation songs), ``seconds`` and ``selected`` (the kept epoch).

    Raises:
        ValueError: no training songs, ``epochs < 1``, an unknown ``select_by``, ``val_tuned``
            without an ``eval.tune.grid``, or an ``ema_decay`` outside [0, 1).
    """
    options = _section(cfg, "train")
    train_cfg, net_cfg = train_config(cfg), model_config(cfg)
    epochs, select_by = int(options["epochs"]), options.get("select_by", "val_hr_3f")
    n_fresh = int(options.get("fresh_medleys", 0) or 0) if sampler is not None else 0
    if not train_songs and not n_fresh:
        raise ValueError("no training songs")
    if epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {epochs}")
    if select_by not in SELECT_BY:
        raise ValueError(f"train.select_by must be one of {SELECT_BY}, got {select_by!r}")
    grid = _validation_grid(cfg)
    if select_by == "val_tuned" and grid is None:
        raise ValueError("train.select_by val_tuned needs a peak-picking grid in eval.tune.grid")
    if not val_songs:
        log.warning("structure: no validation songs, the last epoch is kept")
    torch.manual_seed(train_cfg.seed)
    model = SSMNet(net_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    average = weight_average(model, float(options.get("ema_decay", 0.0) or 0.0))
    kept = model if average is None else average.module
    order_rng = np.random.default_rng(train_cfg.seed)
    log.info("structure: training SSM-Net (%d parameters) on %d songs and %d fresh medleys per epoch, "
             "%d validation, %d epochs", model.n_parameters, len(train_songs), n_fresh, len(val_songs), epochs)
    rows, best, best_state = [], None, None
    for epoch in tqdm(range(1, epochs + 1), desc="train SSM-Net", unit="epoch", disable=not progress):
        start = time.perf_counter()
        songs = list(train_songs) + (fresh_songs(sampler, epoch, n_fresh, cfg) if n_fresh else [])
        losses = _train_epoch(model, optimizer, songs, train_cfg, order_rng, average)
        row = {"epoch": epoch, **losses, **_validate(kept, val_songs, cfg, train_cfg, grid),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        if best is None or _better(row, best, select_by):
            best, best_state = row, {k: v.detach().clone() for k, v in kept.state_dict().items()}
        log.info("epoch %d: loss %.4f, val loss %.4f, val HR3F %.3f", epoch, row["total_loss"], row["val_loss"],
                 row["val_hr_3f"])
    model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows)
    history["selected"] = history["epoch"] == best["epoch"]
    log.info("structure: kept epoch %d (%s)", best["epoch"], select_by)
    save_structure_model(model, cfg, out_path, epoch=int(best["epoch"]), history=history)
    return history


def _train_epoch(model: SSMNet, optimizer: torch.optim.Optimizer, songs: Sequence[StructureSong],
                 train_cfg: SSMNetTrainConfig, order_rng: np.random.Generator,
                 average: AveragedModel | None = None) -> dict[str, float]:
    """One pass over ``songs`` in a random order; mean losses over the steps; ``average`` follows each step."""
    model.train()
    sums, n_steps = np.zeros(3), 0
    order = order_rng.permutation(len(songs))
    for first in range(0, len(songs), train_cfg.batch_size):
        sums += train_step(model, optimizer, [songs[i][:3] for i in order[first : first + train_cfg.batch_size]],
                           train_cfg)
        if average is not None:
            average.update_parameters(model)
        n_steps += 1
    means = sums / n_steps
    return {"ssm_loss": means[0], "novelty_loss": means[1], "total_loss": means[2]}


def _validation_grid(cfg) -> dict | None:
    """``eval.tune.grid`` without local refinement (validation has no fine frames); None when tuning is off."""
    tune = _section(cfg, "eval").get("tune") or {}
    if not tune.get("enabled", False) or not tune.get("grid"):
        return None
    return {key: list(values) for key, values in tune["grid"].items() if key != "local_radius_seconds"}


@torch.no_grad()
def _validate(model: SSMNet, songs: Sequence[StructureSong], cfg, train_cfg: SSMNetTrainConfig,
              grid: Mapping | None = None) -> dict[str, float]:
    """Mean losses and trimmed hit rates over ``songs``, one song at a time, in eval mode.

    With a peak-picking ``grid``, ``val_tuned`` is the best mean of trimmed HR.5F and HR3F over it
    (:func:`songfeel.structure.tuning.tune_peak_picking`); NaN without one.
    """
    from songfeel.structure.tuning import (  # tuning imports this module
        NoveltyTrack,
        tune_peak_picking,
    )

    keys = ("val_ssm_loss", "val_novelty_loss", "val_loss", "val_hr_0_5f", "val_hr_3f")
    if not songs:
        return dict.fromkeys((*keys, "val_tuned"), float("nan"))
    model.eval()
    # Without the fine frames of the written medleys, no local refinement: it moves boundaries by at most
    # local_radius_seconds, so it barely changes HR3F, the selection criterion.
    peaks = {**_section(cfg, "eval")["ssmnet"], "local_radius_seconds": 0.0}
    values, tracks = [], []
    for song in songs:
        out = model(torch.as_tensor(song.patches)[None])
        loss_ssm = ssm_loss(out.ssm, torch.as_tensor(song.ssm)[None])
        loss_novelty = novelty_loss(out.novelty, torch.as_tensor(song.novelty)[None],
                                    class_balanced=train_cfg.novelty_class_balanced)
        estimate, details = _segmentation_from_outputs(out, song.times, song.reference.duration, peaks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # mir_eval's "intervals are empty" while still untrained
            scores = score(song.reference, estimate)
        values.append([loss_ssm.item(), loss_novelty.item(),
                       total_loss(loss_ssm, loss_novelty, train_cfg.alpha).item(),
                       scores["hr_0_5f_trim"], scores["hr_3f_trim"]])
        tracks.append(NoveltyTrack(details["novelty"].astype(np.float64), song.times, song.reference.duration,
                                   None, None))
    row = dict(zip(keys, np.mean(values, axis=0).tolist(), strict=True))
    row["val_tuned"] = float("nan")
    if grid is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _, table = tune_peak_picking({"ssmnet": tracks}, [song.reference for song in songs], {"ssmnet": peaks},
                                         grid)
        row["val_tuned"] = float(table["objective"].max())
    return row


def _better(row: Mapping, best: Mapping, select_by: str) -> bool:
    if math.isnan(row["val_loss"]):
        return True  # no validation: the latest epoch
    if select_by == "val_loss":
        return row["val_loss"] < best["val_loss"]
    if select_by == "val_tuned":
        return (row["val_tuned"], -row["val_loss"]) > (best["val_tuned"], -best["val_loss"])
    if select_by == "val_hr_mean":
        return ((row["val_hr_0_5f"] + row["val_hr_3f"], -row["val_loss"])
                > (best["val_hr_0_5f"] + best["val_hr_3f"], -best["val_loss"]))
    return (row["val_hr_3f"], -row["val_loss"]) > (best["val_hr_3f"], -best["val_loss"])


def save_structure_model(model: SSMNet, cfg, path: str | Path, epoch: int = 0,
                         history: pd.DataFrame | None = None) -> Path:
    """Write ``model``'s weights with everything :func:`segment_audio` needs to use it.

    The file (``torch.save``) holds ``format`` (:data:`CHECKPOINT_FORMAT`), ``state_dict``,
    ``config`` (``features``, ``model``, ``train``, ``eval``: the ``structure``
    config's layout, so that the checkpoint alone can segment and run the baselines),
    ``epoch`` and ``history`` (a list of per-epoch dicts).

    Returns:
        the path written (parents created).
    """
    path = Path(path)
    config = {
        "features": feature_config(cfg).to_dict(),
        "model": {**model.cfg.to_dict(), "channels": list(model.cfg.channels)},
        "train": _section(cfg, "train"),
        "eval": _section(cfg, "eval"),
    }
    records = [] if history is None else json.loads(history.to_json(orient="records"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(), "config": config,
                "epoch": int(epoch), "history": records}, path)
    log.info("structure: wrote %s (epoch %d)", path, epoch)
    return path


def load_structure_model(path: str | Path) -> tuple[SSMNet, dict]:
    """Read a checkpoint of :func:`save_structure_model`.

    Returns:
        the model (CPU, eval mode) and the stored config (a dict with ``features``,
        ``model``, ``train``, ``eval``, usable as ``cfg`` of :func:`segment_audio`),
        plus ``epoch`` and ``history`` keys.

    Raises:
        ValueError: the file is missing, unreadable, not such a checkpoint, or its
            weights do not fit its configuration (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime errors) for a bad file
        raise ValueError(f"{path}: cannot read checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    config = dict(checkpoint["config"])
    try:
        model = SSMNet(model_config(config))
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: weights do not fit the stored configuration: {exc}") from exc
    model.eval()
    config.update(epoch=checkpoint.get("epoch", 0), history=checkpoint.get("history", []))
    return model, config


# --- 4. segmentation and evaluation ----------------------------------------------------------------


def _segmentation_from_outputs(out, times: np.ndarray, duration: float, peaks: Mapping,
                               fine: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Segmentation, dict]:
    """Boundaries picked on the novelty of a one-song :class:`SSMNetOutput`, labels by clustering embeddings."""
    novelty = out.novelty[0].detach().cpu().numpy()
    embeddings = out.embeddings[0].detach().cpu().numpy()
    fine_steps, fine_starts = fine if fine is not None else (None, None)
    boundaries = detect_boundaries(novelty, times, duration, fine_steps, fine_starts, **peak_settings(peaks))
    labels = label_segments(embeddings, times, boundaries, float(peaks.get("label_distance", 0.5)))
    segmentation = Segmentation.from_boundaries(boundaries, labels, duration, "ssmnet")
    return segmentation, {"novelty": novelty, "embeddings": embeddings, "boundaries": boundaries}


class SSMNetPass(NamedTuple):
    """One song through SSM-Net's front end and network (:func:`run_ssmnet`).

    Attributes:
        out: the :class:`~songfeel.structure.ssmnet.SSMNetOutput` of the song (batch of 1).
        times: float64 (n_patches,) SSM frame times in seconds.
        steps: float32 (n_steps, n_mels) the log-mel steps (the fine frames of local refinement).
        starts: float64 (n_steps,) their start times in seconds.
        audio: float32 (n_samples,) the song at ``cfg.features.sample_rate`` Hz.
        duration: the song's length in seconds.
    """

    out: SSMNetOutput
    times: np.ndarray
    steps: np.ndarray
    starts: np.ndarray
    audio: np.ndarray
    duration: float


@torch.no_grad()
def run_ssmnet(model: SSMNet, audio: np.ndarray, sample_rate: int, cfg) -> SSMNetPass:
    """Resample one song to the front end's rate, compute its log-mel steps and patches, run SSM-Net.

    Args:
        model: a trained :class:`SSMNet` matching ``cfg.features``; put in eval mode.
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio`` (resampled with soxr to ``cfg.features.sample_rate`` when it differs).
        cfg: the ``structure`` config or a checkpoint's; reads ``features``.

    Returns:
        the :class:`SSMNetPass`.

    Raises:
        ValueError: ``audio`` is not 1-D, holds NaN/Inf, is silent or is shorter than one patch.
    """
    features = feature_config(cfg)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono with shape (n_samples,), got shape {audio.shape}")
    duration = audio.shape[0] / sample_rate
    if sample_rate != features.sample_rate:
        audio = soxr.resample(audio, sample_rate, features.sample_rate, quality="HQ").astype(np.float32)
    steps = structure_features(audio, features)
    song_patches = patches(steps, features)
    model.eval()
    device = next(model.parameters()).device
    out = model(torch.as_tensor(song_patches, device=device)[None])
    return SSMNetPass(out, patch_times(len(song_patches), features), steps, step_start_times(len(steps), features),
                      audio, duration)


def segment_audio(model: SSMNet, audio: np.ndarray, sample_rate: int, cfg) -> tuple[Segmentation, SegmentDetails]:
    """Segment one song with SSM-Net: features, patches, SSM and novelty, peaks, labels.

    The audio is resampled (soxr) to ``cfg.features.sample_rate`` when it differs
    (:func:`run_ssmnet`). Boundaries are :func:`~songfeel.structure.peaks.detect_boundaries`
    on the novelty curve with ``cfg.eval.ssmnet`` (peak picking, then optional local
    refinement on the log-mel steps); each segment's label clusters its mean embedding
    (:func:`~songfeel.structure.peaks.label_segments`). ``model`` is put in eval mode.

    Args:
        model: a trained :class:`SSMNet` matching ``cfg.features``.
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio``.
        cfg: the ``structure`` config or a checkpoint's (:func:`load_structure_model`);
            reads ``features`` and ``eval.ssmnet``.

    Returns:
        the segmentation (covering ``[0, n_samples / sample_rate]`` seconds, ``source="ssmnet"``)
        and :class:`SegmentDetails`.

    Raises:
        ValueError: ``audio`` is not 1-D, holds NaN/Inf, is silent or is shorter than
            one patch (``cfg.features``: 1.86 s by default).
    """
    song = run_ssmnet(model, audio, sample_rate, cfg)
    segmentation, arrays = _segmentation_from_outputs(song.out, song.times, song.duration,
                                                      _section(cfg, "eval")["ssmnet"], fine=(song.steps, song.starts))
    details = SegmentDetails(times=song.times, ssm=song.out.ssm[0].cpu().numpy(), novelty=arrays["novelty"],
                             embeddings=arrays["embeddings"], boundaries=arrays["boundaries"],
                             duration=song.duration)
    return segmentation, details


def baseline_segmenters(cfg) -> dict[str, Callable[[np.ndarray, int], Segmentation]]:
    """The baselines of ``cfg.eval``: ``foote_<feature>`` per Foote feature and ``laplacian``.

    Each maps ``(audio, sample_rate)`` to a :class:`Segmentation`. ``eval.foote.by_feature.<feature>``,
    when present (stage 05 fills it from validation tuning, :mod:`songfeel.structure.tuning`),
    overrides ``eval.foote``'s keys for that feature.
    """
    options = _section(cfg, "eval")
    foote = dict(options["foote"])
    foote_features = foote.pop("features", ["mfcc", "logmel"])
    by_feature = foote.pop("by_feature", None) or {}
    foote["fine_config"] = feature_config(cfg)  # local refinement searches SSM-Net's own input frames
    segmenters = {}
    for feature in foote_features:
        settings = {**foote, **by_feature.get(feature, {})}
        segmenters[f"foote_{feature}"] = (
            lambda audio, rate, feature=feature, settings=settings: foote_segmentation(
                audio, rate, feature=feature, **settings))
    laplacian = dict(options["laplacian"])
    segmenters["laplacian"] = lambda audio, rate: laplacian_segmentation(audio, rate, **laplacian)
    return segmenters


def medley_songs(medleys: pd.DataFrame) -> pd.DataFrame:
    """Medley manifest rows (``medley_id, audio_path, jams_path``) as a song table of :func:`evaluate_songs`."""
    return pd.DataFrame({"song_id": medleys["medley_id"].astype(str), "audio_path": medleys["audio_path"],
                         "annotation_path": medleys["jams_path"], "format": "jams"})


def evaluate_structure(model: SSMNet, test_medleys: pd.DataFrame, cfg, plot_dir: str | Path | None = None,
                       progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score SSM-Net and the baselines on the same test medleys (:func:`evaluate_songs` on their JAMS).

    Args:
        model: the trained SSM-Net.
        test_medleys: rows with ``medley_id, audio_path, jams_path``.
        cfg: the ``structure`` config; reads ``features`` and ``eval``.
        plot_dir: where to draw the plots; None draws none.
        progress: show a tqdm bar.

    Returns:
        the per-song table and the summary of :func:`evaluate_songs`.

    Raises:
        ValueError: no test medleys, or a JAMS file is unreadable.
        songfeel.errors.AudioError: a medley cannot be decoded.
    """
    if len(test_medleys) == 0:
        raise ValueError("no test medleys to evaluate")
    per_song, summary, _ = evaluate_songs(model, medley_songs(test_medleys), cfg, plot_dir, progress,
                                          skip_errors=False)
    return per_song, summary


#: Columns of the skipped-songs table of :func:`evaluate_songs`.
SKIPPED_SONG_COLUMNS = ("song_id", "audio_path", "annotation_path", "error")


def evaluate_songs(model: SSMNet, songs: pd.DataFrame, cfg, plot_dir: str | Path | None = None,
                   progress: bool = True, skip_errors: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score SSM-Net and the baselines on annotated songs: medleys, or a user's own (e.g. SALAMI, Harmonix).

    Every song is decoded once at ``cfg.features.sample_rate``; SSM-Net
    (:func:`segment_audio`), Foote per feature and Laplacian segmentation
    (:func:`baseline_segmenters`) segment the same audio, and each estimate is scored
    against the song's annotation (:func:`score_methods`; the annotation's duration
    fixes the evaluated span). The first ``cfg.eval.n_plots`` songs are drawn into
    ``plot_dir`` (``<song_id>.png``) when it is given.

    Args:
        model: the trained SSM-Net.
        songs: rows with ``song_id, audio_path, annotation_path`` and an optional
            ``format`` (:func:`~songfeel.structure.annotations.load_annotation`; ``auto`` when absent).
        cfg: the ``structure`` config; reads ``features`` and ``eval``.
        plot_dir: where to draw the plots; None draws none.
        progress: show a tqdm bar.
        skip_errors: a song whose audio or annotation cannot be read, or whose audio is
            too short or silent, is logged and listed in the skipped table and the others
            are scored; with False the first such error is raised.

    Returns:
        the per-song table (:func:`score_methods`, plus ``seconds``: the time each method
        took on the song), the summary (:func:`summarize`) and the skipped songs
        (columns :data:`SKIPPED_SONG_COLUMNS`).

    Raises:
        ValueError: no songs, no song could be scored, or (``skip_errors=False``) an
            unreadable annotation or audio that SSM-Net cannot take.
        songfeel.errors.AudioError: (``skip_errors=False``) a song cannot be decoded.
    """
    from songfeel.structure.plots import plot_song  # matplotlib only when evaluating

    if len(songs) == 0:
        raise ValueError("no songs to evaluate")
    options = _section(cfg, "eval")
    sample_rate = feature_config(cfg).sample_rate
    segmenters = baseline_segmenters(cfg)
    references: dict[str, Segmentation] = {}
    estimates: dict[str, dict[str, Segmentation]] = {"ssmnet": {}, **{name: {} for name in segmenters}}
    seconds: dict[str, dict[str, float]] = {name: {} for name in estimates}
    skipped, n_plotted = [], 0
    formats = songs["format"] if "format" in songs.columns else pd.Series("auto", index=songs.index)
    for row, fmt in tqdm(zip(songs.itertuples(index=False), formats, strict=True), total=len(songs),
                         desc="evaluate structure", unit="song", disable=not progress):
        song = str(row.song_id)
        try:
            audio = load_audio(row.audio_path, sample_rate)
            reference = load_annotation(row.annotation_path, str(fmt), duration=len(audio) / sample_rate)
            song_estimates = {}
            start = time.perf_counter()
            song_estimates["ssmnet"], details = segment_audio(model, audio, sample_rate, cfg)
            song_seconds = {"ssmnet": time.perf_counter() - start}
            for name, segment in segmenters.items():
                start = time.perf_counter()
                song_estimates[name] = segment(audio, sample_rate)
                song_seconds[name] = time.perf_counter() - start
        except (AudioError, ValueError) as exc:
            if not skip_errors:
                raise
            log.warning("structure: skipping %s: %s", song, exc)
            skipped.append({"song_id": song, "audio_path": str(row.audio_path),
                            "annotation_path": str(row.annotation_path), "error": str(exc)})
            continue
        references[song] = reference
        for name in estimates:
            estimates[name][song], seconds[name][song] = song_estimates[name], song_seconds[name]
        if plot_dir is not None and n_plotted < int(options.get("n_plots", 0)):
            plot_song(details, reference, Path(plot_dir) / f"{song}.png", title=song)
            n_plotted += 1
    skipped_table = pd.DataFrame(skipped, columns=list(SKIPPED_SONG_COLUMNS))
    if not references:
        raise ValueError(f"none of the {len(songs)} songs could be scored: "
                         + "; ".join(f"{r['song_id']}: {r['error']}" for r in skipped[:5]))
    per_song = score_methods(references, estimates)
    per_song["seconds"] = [seconds[m][s] for m, s in zip(per_song["method"], per_song["song_id"], strict=True)]
    summary = summarize(per_song, int(options.get("bootstrap_resamples", 1000)), int(options.get("seed", 0)))
    return per_song, summary, skipped_table


def score_methods(references: Mapping[str, Segmentation],
                  estimates: Mapping[str, Mapping[str, Segmentation]]) -> pd.DataFrame:
    """Score every method's estimate of every reference song (:func:`~songfeel.structure.evaluation.score`).

    Args:
        references: annotation per song id.
        estimates: method name -> song id -> estimate; every method must cover every reference song.

    Returns:
        one row per method x song, methods in the given order and songs sorted: columns
        :data:`PER_SONG_COLUMNS` then :data:`~songfeel.structure.evaluation.SCORE_KEYS` (all in [0, 1]).

    Raises:
        KeyError: a method lacks an estimate for a reference song (method and songs named).
    """
    rows = []
    for method, method_estimates in estimates.items():
        missing = sorted(set(references) - set(method_estimates))
        if missing:
            raise KeyError(f"{method}: no estimate for {len(missing)} song(s): {missing[:10]}")
        for song in sorted(references):
            reference, estimate = references[song], method_estimates[song]
            rows.append({"method": method, "song_id": song, "n_boundaries_reference": len(reference.boundaries()),
                         "n_boundaries_estimate": len(estimate.boundaries()), **score(reference, estimate)})
    return pd.DataFrame(rows, columns=[*PER_SONG_COLUMNS, *SCORE_KEYS])


def bootstrap_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (resampled with replacement),
    through :func:`songfeel.metrics.triplet.bootstrap_ci`.

    Returns:
        ``(low, high)``; NaN for no values or ``n_resamples < 1``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or n_resamples < 1:
        return float("nan"), float("nan")
    _, low, high = triplet_bootstrap_ci(values, n_resamples=n_resamples, confidence=level, seed=seed)
    return low, high


def summarize(per_song: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean of each score per method, with bootstrap 95 % CIs over songs for :data:`CI_KEYS`.

    Every method resamples with the same seed, so methods scored on the same songs
    are resampled identically (paired).

    Args:
        per_song: a :func:`score_methods` table (an optional ``seconds`` column is averaged too).
        n_resamples: bootstrap resamples (0: no intervals, NaN).
        seed: the bootstrap seed.

    Returns:
        indexed by ``method`` (order of first appearance): ``n_songs``, the mean of every
        score column, and ``<key>_ci_low``, ``<key>_ci_high`` for each of :data:`CI_KEYS`.
    """
    value_columns = [c for c in (*SCORE_KEYS, "seconds") if c in per_song.columns]
    rows = {}
    for method, table in per_song.groupby("method", sort=False):
        table = table.sort_values("song_id")
        row = {"n_songs": int(table["song_id"].nunique()), **table[value_columns].mean().to_dict()}
        for key in CI_KEYS:
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = bootstrap_ci(table[key].to_numpy(), n_resamples, seed)
        rows[method] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "method"
    return summary


#: Scores that :func:`paired_differences` compares song by song.
PAIRED_KEYS = ("hr_0_5f_trim", "hr_3f_trim", "pairwise_f")


def paired_differences(per_song: pd.DataFrame, method: str = "ssmnet", n_resamples: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """``method`` minus every other method on the same songs, with paired bootstrap 95 % CIs.

    For each other method and each of :data:`PAIRED_KEYS`, the per-song differences
    ``score(method) - score(other)`` are averaged, and their percentile bootstrap
    interval resamples songs (:func:`bootstrap_ci`): an interval above 0 means
    ``method`` is better on such songs, beyond the song-to-song noise that the
    per-method intervals of :func:`summarize` carry twice.

    Args:
        per_song: a :func:`score_methods` table holding ``method``.
        method: the method compared against the others.
        n_resamples: bootstrap resamples (0: no intervals, NaN).
        seed: the bootstrap seed.

    Returns:
        indexed by ``baseline`` (the other methods, in order of first appearance):
        ``n_songs`` and ``<key>_diff``, ``<key>_diff_ci_low``, ``<key>_diff_ci_high``.

    Raises:
        KeyError: ``method`` is not in ``per_song``, or a method lacks a song the other has.
    """
    if method not in set(per_song["method"]):
        raise KeyError(f"{method!r} is not among the scored methods {sorted(set(per_song['method']))}")
    tables = {name: table.set_index("song_id").sort_index() for name, table in per_song.groupby("method", sort=False)}
    mine = tables.pop(method)
    rows = {}
    for other, table in tables.items():
        if list(table.index) != list(mine.index):
            raise KeyError(f"{method} and {other} were not scored on the same songs")
        row = {"n_songs": len(table)}
        for key in PAIRED_KEYS:
            difference = (mine[key] - table[key]).to_numpy()
            low, high = bootstrap_ci(difference, n_resamples, seed)
            row.update({f"{key}_diff": float(difference.mean()), f"{key}_diff_ci_low": low,
                        f"{key}_diff_ci_high": high})
        rows[other] = row
    differences = pd.DataFrame.from_dict(rows, orient="index")
    differences.index.name = "baseline"
    return differences


def paired_markdown(differences: pd.DataFrame, method: str = "ssmnet") -> str:
    """A Markdown table of :func:`paired_differences`: ``method`` minus each baseline, with 95 % CIs."""
    names = {"hr_0_5f_trim": "HR.5F trimmed", "hr_3f_trim": "HR3F trimmed", "pairwise_f": "pairwise F"}
    lines = [f"| {method} minus | songs | " + " | ".join(f"{names[k]} [95 % CI]" for k in PAIRED_KEYS) + " |",
             "|" + "---|" * (2 + len(PAIRED_KEYS))]
    for baseline, row in differences.iterrows():
        cells = []
        for key in PAIRED_KEYS:
            low, high = row[f"{key}_diff_ci_low"], row[f"{key}_diff_ci_high"]
            interval = "" if np.isnan(low) else f" [{low:+.3f}, {high:+.3f}]"
            cells.append(f"{row[f'{key}_diff']:+.3f}{interval}")
        lines.append(f"| {baseline} | {int(row['n_songs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_metrics(differences: pd.DataFrame, method: str = "ssmnet") -> dict[str, float]:
    """Flat metrics ``<method>_minus_<baseline>/<key>_diff[_ci_low|_ci_high]`` (NaN left out)."""
    return {f"{method}_minus_{baseline}/{column}": round(float(value), 6)
            for baseline, row in differences.iterrows() for column, value in row.items()
            if column != "n_songs" and not pd.isna(value)}


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of :func:`summarize`'s output: one row per method, means with 95 % CIs.

    HR.5F and HR3F are the boundary hit-rate F-measures (±0.5 s, ±3 s), trimmed (the
    song's start and end are not boundaries) with their CI, then untrimmed; pairwise
    F and NCE F score the labels.
    """
    def with_ci(row, key):
        low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
        if np.isnan(low):
            return f"{row[key]:.3f}"
        return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]"

    header = ("| method | songs | HR.5F trimmed [95 % CI] | HR3F trimmed [95 % CI] | HR.5F | HR3F "
              "| pairwise F | NCE F |")
    lines = [header, "|" + "---|" * 8]
    for method, row in summary.iterrows():
        lines.append(f"| {method} | {int(row['n_songs'])} | {with_ci(row, 'hr_0_5f_trim')} | "
                     f"{with_ci(row, 'hr_3f_trim')} | {row['hr_0_5f']:.3f} | {row['hr_3f']:.3f} | "
                     f"{row['pairwise_f']:.3f} | {row['nce_f']:.3f} |")
    return "\n".join(lines) + "\n"


def comparison_report(per_song: pd.DataFrame, summary: pd.DataFrame, cfg, method: str = "ssmnet"
                      ) -> tuple[pd.DataFrame, dict[str, float], str]:
    """Everything written about one evaluation: paired differences, flat metrics and Markdown.

    Args:
        per_song: the :func:`evaluate_songs` per-song table.
        summary: its :func:`summarize` table.
        cfg: the ``structure`` config or a checkpoint's; reads ``eval.bootstrap_resamples`` and ``eval.seed``.
        method: the method compared against the others.

    Returns:
        the :func:`paired_differences` table; flat metrics ``<method>/<score>`` (:func:`structure_metrics`,
        None left out) and ``<method>_minus_<baseline>/...`` (:func:`paired_metrics`); and the
        summary and paired tables as Markdown.

    Raises:
        KeyError: ``method`` is not in ``per_song``.
    """
    options = _section(cfg, "eval")
    differences = paired_differences(per_song, method, int(options.get("bootstrap_resamples", 1000)),
                                     int(options.get("seed", 0)))
    flat = {f"{name}/{key}": value for name, values in structure_metrics(summary).items()
            for key, value in values.items() if value is not None}
    flat.update(paired_metrics(differences, method))
    return differences, flat, summary_markdown(summary) + "\n" + paired_markdown(differences, method)


def structure_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Flat, JSON-serialisable metrics: method -> ``n_songs``, HR means and CIs, pairwise F, NCE F.

    Keys per method: ``n_songs``, each of :data:`CI_KEYS` with ``_ci_low``/``_ci_high``,
    ``pairwise_f``, ``nce_f`` (and ``seconds`` when present). NaN becomes None.
    """
    keys = ["n_songs", *(f"{k}{s}" for k in CI_KEYS for s in ("", "_ci_low", "_ci_high")), "pairwise_f", "nce_f",
            "seconds"]
    metrics = {}
    for method, row in summary.iterrows():
        values = {}
        for key in keys:
            if key not in row.index:
                continue
            value = row[key]
            if key == "n_songs":
                values[key] = int(value)
            else:
                values[key] = None if pd.isna(value) else round(float(value), 6)
        metrics[str(method)] = values
    return metrics
