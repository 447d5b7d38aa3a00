"""SSM-Net's training (Peeters, ISMIR 2023, arXiv 2309.02243): the epoch with the best validation score is kept.

The loop is songfeel's one training loop (:func:`songfeel.loop.train_epochs`) with SSM-Net's step
(:func:`songfeel.segmentation.ssmnet.train_step`: ``cfg.train.batch_size`` songs per AdamW step in a
seeded order, ``alpha * ssm + (1 - alpha) * novelty`` loss, gradient clipping), one optimiser state
across all epochs. With a ``sampler``, every epoch also trains on ``cfg.train.fresh_medleys`` medleys
drawn for that epoch (:func:`~songfeel.segmentation.dataset.fresh_songs`): new sections, patterns,
crossfades and levels each time, which keeps SSM-Net from memorising the few written medleys.

After each epoch the model segments every validation song as
:func:`~songfeel.segmentation.infer.segment_audio` does (``cfg.eval.ssmnet`` peak picking), and the
epoch is kept when it is better by ``cfg.train.select_by``: ``val_hr_3f``, the mean trimmed HR3F;
``val_hr_mean``, the mean of trimmed HR.5F and HR3F; ``val_tuned``, that mean with the best peak
picking of ``cfg.eval.tune.grid`` (as stage 05 will use; local refinement off), ties going to the
lower validation loss; or ``val_loss``. Without validation songs the last epoch is kept. With
``cfg.train.ema_decay`` (per step, e.g. 0.995), validation and the checkpoint use an exponential
moving average of the weights (:func:`songfeel.averaging.weight_average`), which smooths the
epoch-to-epoch swings that make a single epoch's weights a noisy choice.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from songfeel.averaging import weight_average
from songfeel.loop import LoopState, step_sums, train_epochs
from songfeel.segmentation.checkpoint import save_ssmnet
from songfeel.segmentation.config import (
    SELECT_BY,
    feature_config,
    model_config,
    pretrain_config,
    section,
    train_config,
)
from songfeel.segmentation.dataset import StructureSong, fresh_songs
from songfeel.segmentation.evaluation import score
from songfeel.segmentation.infer import segmentation_from_outputs
from songfeel.segmentation.medleys import MedleySampler
from songfeel.segmentation.pretrain import TeacherSongs, pretrain_with_teacher
from songfeel.segmentation.ssmnet import (
    SSMNet,
    SSMNetTrainConfig,
    as_song,
    novelty_loss,
    ssm_loss,
    total_loss,
    train_step,
)
from songfeel.segmentation.tuning import NoveltyTrack, tune_peak_picking

log = logging.getLogger(__name__)


def train_ssmnet(train_songs: Sequence[StructureSong], val_songs: Sequence[StructureSong], cfg,
                 out_path: str | Path, progress: bool = True, sampler: MedleySampler | None = None,
                 teacher: TeacherSongs | None = None) -> pd.DataFrame:
    """Train SSM-Net and save the epoch with the best validation score as a checkpoint (the rules:
    this module's docstring).

    Args:
        train_songs: training songs (:func:`load_medley_songs`).
        val_songs: validation songs, possibly empty.
        cfg: the ``segmentation`` config; reads ``features``, ``model``, ``train`` and ``eval.ssmnet``.
        out_path: the checkpoint to write (:func:`save_ssmnet`).
        progress: show a tqdm bar.
        sampler: fresh training medleys (:func:`medley_sampler`), or None for the written ones only.
        teacher: the training songs with their teacher targets; with ``cfg.pretrain.epochs > 0`` the
            encoder is first pretrained on them (:func:`~songfeel.segmentation.pretrain.pretrain_with_teacher`).

    Returns:
        one row per epoch: ``epoch, ssm_loss, novelty_loss, total_loss`` (training means),
        ``val_ssm_loss, val_novelty_loss, val_loss, val_hr_0_5f, val_hr_3f`` (trimmed hit
        rates), ``val_tuned`` (the grid's best mean of the two; NaN without ``eval.tune``;
        all NaN without validation songs), ``seconds`` and ``selected`` (the kept epoch).

    Raises:
        ValueError: no training songs, ``epochs < 1``, an unknown ``select_by``, ``val_tuned``
            without an ``eval.tune.grid``, an ``ema_decay`` outside [0, 1), or ``pretrain.epochs > 0``
            without ``teacher``.
    """
    options = section(cfg, "train")
    train_cfg, net_cfg = train_config(cfg), model_config(cfg)
    epochs, select_by = int(options["epochs"]), options["select_by"]
    n_fresh = int(options["fresh_medleys"]) if sampler is not None else 0
    grid = _validation_grid(cfg)
    _check_options(bool(train_songs) or n_fresh > 0, epochs, select_by, grid)
    if not val_songs:
        log.warning("segmentation: no validation songs, the last epoch is kept")
    torch.manual_seed(train_cfg.seed)
    model = SSMNet(net_cfg)
    pretrain_cfg, pretrained = pretrain_config(cfg), None
    if pretrain_cfg is not None and pretrain_cfg.epochs:
        if teacher is None:
            raise ValueError("pretrain.epochs > 0 needs the training songs' teacher targets")
        pretrained = pretrain_with_teacher(model, teacher, feature_config(cfg), pretrain_cfg, progress=progress)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    average = weight_average(model, float(options["ema_decay"]))
    kept = model if average is None else average.module
    order_rng = np.random.default_rng(train_cfg.seed)
    log.info("structure: training SSM-Net (%d parameters) on %d songs and %d fresh medleys per epoch, "
             "%d validation, %d epochs", model.n_parameters, len(train_songs), n_fresh, len(val_songs), epochs)
    best_state = {}

    def step(batch: Sequence[StructureSong]) -> dict[str, float]:
        losses = train_step(model, optimizer, [song[:3] for song in batch], train_cfg)
        if average is not None:
            average.update_parameters(model)
        return dict(zip(("ssm_loss", "novelty_loss", "total_loss"), losses))

    def run_epoch(epoch: int) -> dict[str, float]:
        songs = list(train_songs) + (fresh_songs(sampler, epoch, n_fresh, cfg) if n_fresh else [])
        model.train()
        order = order_rng.permutation(len(songs))
        batches = ([songs[i] for i in order[first : first + train_cfg.batch_size]]
                   for first in range(0, len(songs), train_cfg.batch_size))
        sums, n_steps = step_sums(step, batches)
        return {key: value / n_steps for key, value in sums.items()}

    def keep(row: dict) -> None:
        best_state.update({k: v.detach().clone() for k, v in kept.state_dict().items()})

    def report(row: dict, state: LoopState, stopped: bool) -> None:
        log.info("epoch %d: loss %.4f, val loss %.4f, val HR3F %.3f", row["epoch"], row["total_loss"],
                 row["val_loss"], row["val_hr_3f"])

    state = train_epochs(epochs, run_epoch, lambda epoch: _validate(kept, val_songs, cfg, train_cfg, grid),
                         is_better=lambda row, best: _better(row, best, select_by), on_better=keep,
                         after_epoch=report, desc="train SSM-Net", progress=progress)
    rows, best = state.history, state.best
    model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows)
    history["selected"] = history["epoch"] == best["epoch"]
    log.info("structure: kept epoch %d (%s)", best["epoch"], select_by)
    save_ssmnet(model, cfg, out_path, epoch=int(best["epoch"]), history=history, pretrain_history=pretrained)
    return history


def _check_options(has_songs: bool, epochs: int, select_by: str, grid: dict | None) -> None:
    if not has_songs:
        raise ValueError("no training songs")
    if epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {epochs}")
    if select_by not in SELECT_BY:
        raise ValueError(f"train.select_by must be one of {SELECT_BY}, got {select_by!r}")
    if select_by == "val_tuned" and grid is None:
        raise ValueError("train.select_by val_tuned needs a peak-picking grid in eval.tune.grid")


def _validation_grid(cfg) -> dict | None:
    """``eval.tune.grid`` without local refinement (validation has no fine frames); None when tuning is off."""
    tune = section(cfg, "eval")["tune"]
    if not tune["enabled"] or not tune["grid"]:
        return None
    return {key: list(values) for key, values in tune["grid"].items() if key != "local_radius_seconds"}


@torch.no_grad()
def _validate(model: SSMNet, songs: Sequence[StructureSong], cfg, train_cfg: SSMNetTrainConfig,
              grid: Mapping | None = None) -> dict[str, float]:
    """Mean losses and trimmed hit rates over ``songs``, one song at a time, in eval mode.

    With a peak-picking ``grid``, ``val_tuned`` is the best mean of trimmed HR.5F and HR3F over it
    (:func:`songfeel.segmentation.tuning.tune_peak_picking`); NaN without one.
    """
    keys = ("val_ssm_loss", "val_novelty_loss", "val_loss", "val_hr_0_5f", "val_hr_3f")
    if not songs:
        return dict.fromkeys((*keys, "val_tuned"), float("nan"))
    model.eval()
    # Without the fine frames of the written medleys, no local refinement: it moves boundaries by at most
    # local_radius_seconds, so it barely changes HR3F, the selection criterion.
    peaks = {**section(cfg, "eval")["ssmnet"], "local_radius_seconds": 0.0}
    values, tracks = [], []
    for song in songs:
        out = model(torch.as_tensor(song.patches)[None])
        loss_ssm = ssm_loss(out.ssm, torch.as_tensor(song.ssm)[None])
        loss_novelty = novelty_loss(out.novelty, torch.as_tensor(song.novelty)[None],
                                    class_balanced=train_cfg.novelty_class_balanced)
        estimate, details = segmentation_from_outputs(out, song.times, song.reference.duration, peaks)
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


def fit_songs(model: SSMNet, songs: Sequence, cfg: SSMNetTrainConfig, epochs: int,
              progress: bool = True) -> pd.DataFrame:
    """Train ``model`` in place on songs given as arrays, with no validation (arXiv 2309.02243, section 4).

    The same loop and step as :func:`train_ssmnet`: every epoch visits the songs once in a seeded
    random order, ``cfg.batch_size`` songs per AdamW step, minimising ``alpha * ssm_loss + (1 - alpha)
    * novelty_loss``.

    Args:
        model: the network.
        songs: ``(patches (n, patch_steps, n_mels), target ssm (n, n), target novelty (n,))``
            per song, numpy arrays or tensors, targets in [0, 1].
        cfg: training knobs.
        epochs: passes over the songs.
        progress: show a tqdm bar.

    Returns:
        one row per epoch: ``epoch, ssm_loss, novelty_loss, total_loss, seconds`` (losses are the
        mean over the epoch's steps, in training mode).

    Raises:
        ValueError: no songs, a malformed song, or ``epochs < 1``.
    """
    if not songs:
        raise ValueError("no songs to train on")
    songs = [as_song(song, index) for index, song in enumerate(songs)]
    torch.manual_seed(cfg.seed)
    order_rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    log.info("training SSM-Net (%d parameters) on %d songs for %d epochs", model.n_parameters, len(songs), epochs)

    def step(batch: list) -> dict[str, float]:
        return dict(zip(("ssm_loss", "novelty_loss", "total_loss"), train_step(model, optimizer, batch, cfg)))

    def run_epoch(epoch: int) -> dict[str, float]:
        model.train()
        order = order_rng.permutation(len(songs))
        sums, n_steps = step_sums(step, ([songs[i] for i in order[first : first + cfg.batch_size]]
                                         for first in range(0, len(songs), cfg.batch_size)))
        return {key: value / n_steps for key, value in sums.items()}

    state = train_epochs(epochs, run_epoch, lambda epoch: {}, is_better=lambda row, best: False,
                         desc="train SSM-Net", progress=progress)
    model.eval()
    return pd.DataFrame(state.history)
