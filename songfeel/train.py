"""Stage 04: train one embedder variant on triplets from the feature store.

Training streams random crops out of core (:class:`songfeel.sampler.TripletStream`:
per-anchor-track streams multiplexed ``n_active`` at a time, read through a
DataLoader with ``num_workers`` workers). Crops last a random number of
windows, ``crop_windows`` (20-60 by default, as the MECOMP author suggests;
clipped to the excerpt), one length per batch, and are augmented on the
cached log-mel (:class:`songfeel.augment.LogMelAugment`: gain, pitch, tempo,
codec-like filtering), so that the embedding holds up under MECOMP's own
decoding. Every role of a batch goes through the model in one padded, masked
forward pass.

The loss (config group ``loss``) is a weighted sum of

* the triplet margin loss with in-batch negative mining (``none``, ``hard`` or
  ``semi-hard``; Schroff et al. 2015), where a candidate negative is any crop of
  the batch whose label group (album, genre, mood/style ... from the manifest)
  differs from the anchor's, and
* NT-Xent (Chen et al. 2020) on two independent crops of each anchor's track
  (the anchor and its *view*), as in structure derivation.

AdamW with a cosine learning-rate schedule (per step). After every epoch the
validation triplet accuracy is measured on whole excerpts; accuracy, not loss,
picks the checkpoint, and training stops early when it has not improved for
``patience`` epochs, but never before ``min_epochs`` (stopping before the cosine
schedule has lowered the learning rate throws most of it away). With
``ema_decay``, validation, the checkpoint and the exported weights are an
exponential moving average of the weights (Polyak averaging, through
:class:`torch.optim.swa_utils.AveragedModel`; the decay is per step), which
takes the step-to-step noise of a high learning rate and small batches out of
both the model and the choice of its epoch; the raw weights' validation
accuracy is kept beside it (``val_accuracy_raw``). Runs are seeded (Python, NumPy, torch and the sampler,
whose draws depend on ``(seed, epoch, worker)``), and resumable: ``last.pt``
is written after every epoch and a rerun with the same configuration goes on
from it (with ``train.resume``).

A run folder holds ``model.pt`` (best checkpoint), ``last.pt`` (resume state),
``history.csv`` (one row per epoch: ``epoch, train_loss, triplet_loss,
ntxent_loss, train_accuracy, val_accuracy, lr, seconds``, plus ``val_accuracy_raw``
with ``ema_decay``) and ``metrics.json``
(``variant, val_triplet_accuracy, best_epoch, epochs_run, n_parameters,
size_bytes_fp32, device``). The history is also copied to ``curves_path``,
which DVC plots.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from songfeel import manifest as manifest_io
from songfeel.augment import LogMelAugment
from songfeel.averaging import weight_average
from songfeel.embed import triplet_accuracy_on_store, triplet_excerpts
from songfeel.features import FeatureConfig
from songfeel.hashing import config_hash
from songfeel.loop import LoopState, step_sums, train_epochs
from songfeel.losses import (
    mined_triplet_loss,
    nt_xent_loss,
    regression_distillation_loss,
    relational_distillation_loss,
    triplet_correct,
)
from songfeel.models.embedder import build_embedder, model_config, parameter_count
from songfeel.sampler import PaddedTripletCollate, TripletBatch, TripletStream
from songfeel.store import FeatureStore
from songfeel.teacher.targets import CropTargets

log = logging.getLogger(__name__)

#: The loss parts :func:`batch_loss` returns, averaged over an epoch's steps in the history.
LOSS_PARTS = ("loss", "triplet", "ntxent", "distill", "relational")

#: Training knobs that do not change the result, left out of the resume fingerprint.
_NOT_IN_FINGERPRINT = ("variant", "out_dir", "curves_path", "resume", "num_threads", "patience", "min_epochs", "device")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU; ``cpu`` / ``cuda`` force one.

    Raises:
        ValueError: ``cuda`` is asked for and no GPU is present, or the name is unknown.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is present")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def crop_frame_range(cfg: DictConfig, features: FeatureConfig) -> tuple[int, int]:
    """The (min, max) crop length in frames for ``train.crop_windows`` windows of the variant.

    ``n`` windows of ``window_frames`` frames every ``hop_frames`` frames span
    ``window_frames + (n - 1) * hop_frames`` frames.

    Raises:
        ValueError: the range is not ``1 <= min <= max`` windows.
    """
    low, high = (int(n) for n in cfg.train.crop_windows)
    if not 1 <= low <= high:
        raise ValueError(f"train.crop_windows must be 1 <= min <= max, got {list(cfg.train.crop_windows)}")
    window = features.seconds_to_frames(cfg.window.window_seconds)
    hop = features.seconds_to_frames(cfg.window.hop_seconds)
    return window + (low - 1) * hop, window + (high - 1) * hop


def label_groups(manifest_path: str | Path | None, label_columns) -> dict[str, int]:
    """Track id -> integer label group (the joined ``label_columns`` of the manifest); {} without a manifest."""
    if manifest_path is None:
        return {}
    tracks = manifest_io.read(manifest_path)
    keys = manifest_io.label_key(tracks, list(label_columns))
    index = {key: i for i, key in enumerate(sorted(set(keys)))}
    return {track: index[key] for track, key in zip(tracks["track_id"], keys)}


def training_loader(cfg: DictConfig, store_path: str | Path, triplets: list[tuple], crop_frames: tuple[int, int],
                    features: FeatureConfig, groups: dict[str, int],
                    targets: CropTargets | None = None) -> tuple[TripletStream, DataLoader]:
    """The training stream and its DataLoader of :class:`~songfeel.sampler.TripletBatch` (with the crops'
    teacher targets when ``targets`` is given)."""
    train_cfg = cfg.train
    augment = LogMelAugment.from_mapping(cfg.augment, features)
    stream = TripletStream(
        store_path,
        triplets,
        crop_frames,
        gain_db=0.0,  # the gain is part of ``augment``
        n_active=train_cfg.n_active,
        stream_rate=train_cfg.stream_rate,
        samples_per_epoch=train_cfg.samples_per_epoch,
        crop_group=train_cfg.batch_size,
        seed=train_cfg.seed,
        augment=augment,
        views=cfg.loss.ntxent_weight > 0,
    )
    loader = DataLoader(
        stream,
        batch_size=train_cfg.batch_size,
        num_workers=train_cfg.num_workers,
        collate_fn=PaddedTripletCollate(groups, targets),
        generator=torch.Generator().manual_seed(train_cfg.seed),
    )
    return stream, loader


def distillation_weights(loss_cfg: DictConfig) -> tuple[float, float]:
    """``(distill_weight, relational_weight)`` of the loss config (0 where absent)."""
    return float(loss_cfg.distill_weight), float(loss_cfg.relational_weight)


def distils(loss_cfg: DictConfig) -> bool:
    """Whether the loss distils the teacher (either distillation weight > 0), so training needs its targets."""
    return any(weight > 0 for weight in distillation_weights(loss_cfg))


def batch_loss(model, batch: TripletBatch, loss_cfg: DictConfig, device: torch.device,
               projection: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The weighted loss of one batch and its parts.

    Distillation (``loss.distill_weight``, ``loss.relational_weight``) uses every crop of
    the batch that has a teacher target: the regression of ``projection(embedding)`` onto
    it (:func:`~songfeel.losses.regression_distillation_loss`) and the relational loss
    between the embeddings and the targets (:func:`~songfeel.losses.relational_distillation_loss`).

    Returns:
        ``loss`` (scalar, to minimise), ``triplet``, ``ntxent``, ``distill`` and
        ``relational`` (scalars, unweighted; 0 when their weight is 0) and ``correct``
        (bool (batch,), d(a, p) < d(a, n) for the sampled negatives).

    Raises:
        ValueError: a distillation weight is set but the batch has no teacher targets, or
            the regression has no ``projection``.
    """
    embeddings = model(batch.frames.to(device), batch.lengths.to(device))
    roles = embeddings.reshape(batch.n_roles, -1, embeddings.shape[-1])
    groups = batch.groups.to(device).reshape(batch.n_roles, -1)
    tracks = batch.tracks.to(device).reshape(batch.n_roles, -1)
    zero = embeddings.new_zeros(())
    triplet = zero
    if loss_cfg.triplet_weight > 0:
        triplet = mined_triplet_loss(roles[0], roles[1], roles[2], groups[0], groups[1], groups[2],
                                     margin=loss_cfg.margin, mining=loss_cfg.mining)
    ntxent = zero
    if loss_cfg.ntxent_weight > 0:
        ntxent = nt_xent_loss(roles[0], roles[3], temperature=loss_cfg.temperature, groups=tracks[0])
    distill = relational = zero
    distill_weight, relational_weight = distillation_weights(loss_cfg)
    if distils(loss_cfg):
        if batch.teacher is None:
            raise ValueError("loss.distill_weight or loss.relational_weight is set, but the batch has no teacher "
                             "targets: run the teacher stage and pass its store to training")
        rows = batch.has_teacher.to(device)
        student, teacher = embeddings[rows], batch.teacher.to(device)[rows]
        if student.shape[0] >= 2:
            if distill_weight > 0:
                if projection is None:
                    raise ValueError("loss.distill_weight needs a projection of the embedding onto the teacher's outputs")
                distill = regression_distillation_loss(projection(student), teacher)
            if relational_weight > 0:
                relational = relational_distillation_loss(student, teacher)
    return {
        "loss": (loss_cfg.triplet_weight * triplet + loss_cfg.ntxent_weight * ntxent
                 + distill_weight * distill + relational_weight * relational),
        "triplet": triplet.detach(),
        "ntxent": ntxent.detach(),
        "distill": distill.detach(),
        "relational": relational.detach(),
        "correct": triplet_correct(roles[0], roles[1], roles[2]).detach(),
    }


def run_fingerprint(cfg: DictConfig, features: FeatureConfig, n_train: int, n_val: int) -> str:
    """What a resumed run must share with the run it resumes (model, loss, augmentation, data sizes)."""
    train = {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items() if k not in _NOT_IN_FINGERPRINT}
    return config_hash({
        "model": model_config(cfg),
        "train": train,
        "loss": OmegaConf.to_container(cfg.loss, resolve=True),
        "augment": OmegaConf.to_container(cfg.augment, resolve=True),
        "features": features.to_dict(),
        "triplets": [n_train, n_val],
    })


def _load_resume_state(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log.warning("%s: written by another configuration, starting afresh", path)
        return None
    return state


def train_variant(cfg: DictConfig, store_path: str | Path, triplets_path: str | Path, out_dir: str | Path,
                  manifest_path: str | Path | None = None, teacher_path: str | Path | None = None) -> dict:
    """Train the variant described by ``cfg`` and write its run folder.

    Args:
        cfg: the composed config (``window``, ``model``, ``head``, ``loss``, ``augment``, ``train``,
            ``dataset.label_columns``); ``train.variant`` names the run.
        store_path: the HDF5 feature store of stage 02.
        triplets_path: the triplet CSV of stage 03.
        out_dir: the run folder to write.
        manifest_path: the manifest of stage 01, for the label groups of negative mining; without
            it, mining only considers the sampled negatives.
        teacher_path: the teacher-target store (:mod:`songfeel.teacher.targets`), needed when
            ``loss.distill_weight`` or ``loss.relational_weight`` is > 0. The regression's
            projection (embedding -> teacher outputs) is trained with the model but not saved
            in ``model.pt``: the exported embedding is unchanged.

    Returns:
        the run's metrics (also written to ``out_dir/metrics.json``).

    Raises:
        ValueError: there are no training or no validation triplets, or a config value is out of range.
    """
    train_cfg = cfg.train
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(train_cfg.seed)
    torch.set_num_threads(train_cfg.num_threads)
    table = pd.read_csv(triplets_path)
    groups = label_groups(manifest_path, cfg.dataset.label_columns)
    with FeatureStore(store_path) as store:
        train_triplets = triplet_excerpts(table[table["split"] == "train"], store)
        val_triplets = triplet_excerpts(table[table["split"] == "val"], store)
        if not train_triplets or not val_triplets:
            raise ValueError(f"{triplets_path}: need train and val triplets, got {len(train_triplets)} and {len(val_triplets)}")
        run = _EmbedderRun(cfg, store, val_triplets, out_dir, select_device(train_cfg.device))
        run.build(store_path, train_triplets, groups, teacher_path, manifest_path)
        state, start = run.resume(run_fingerprint(cfg, store.config, len(train_triplets), len(val_triplets)))
        state = train_epochs(train_cfg.epochs, run.run_epoch, run.validate,
                             is_better=lambda row, best: row["val_accuracy"] > best["val_accuracy"],
                             on_better=run.save_checkpoint, after_epoch=run.after_epoch, patience=train_cfg.patience,
                             min_epochs=int(train_cfg.min_epochs), start=start, state=state,
                             desc=run.variant)
    return _write_run_files(run, state.history, state.best or {"epoch": -1, "val_accuracy": -1.0})


class _EmbedderRun:
    """One variant's training: the model, its optimiser and data, and the step, epoch, validation and
    checkpoint functions that :func:`songfeel.loop.train_epochs` runs."""

    def __init__(self, cfg: DictConfig, store: FeatureStore, val_triplets: list, out_dir: Path,
                 device: torch.device) -> None:
        self.cfg, self.train_cfg, self.store, self.val_triplets = cfg, cfg.train, store, val_triplets
        self.out_dir, self.device, self.variant = out_dir, device, str(cfg.train.variant)
        self.features = store.config
        self.model = build_embedder(cfg, self.features).to(device)
        self.n_parameters = parameter_count(self.model)

    def build(self, store_path, train_triplets: list, groups: dict, teacher_path, manifest_path) -> None:
        """The teacher targets and projection (when the loss distils), optimiser, schedule, data and weight average."""
        cfg, train_cfg = self.cfg, self.train_cfg
        log.info("%s: %d parameters (%.1f kB fp32) on %s, %d train / %d val triplets", self.variant,
                 self.n_parameters, self.n_parameters * 4 / 1e3, self.device, len(train_triplets),
                 len(self.val_triplets))
        self.targets, self.projection = _distillation(cfg, teacher_path, manifest_path, train_triplets,
                                                      self.features, self.device)
        trained = [*self.model.parameters(), *(self.projection.parameters() if self.projection is not None else ())]
        self.optimiser = torch.optim.AdamW(trained, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        self.stream, self.loader = training_loader(cfg, store_path, train_triplets, crop_frame_range(cfg, self.features),
                                                   self.features, groups, self.targets)
        self.steps_per_epoch = self.stream.batches_per_epoch(train_cfg.batch_size, train_cfg.num_workers)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser,
                                                                   T_max=train_cfg.epochs * self.steps_per_epoch)
        self.ema = weight_average(self.model, train_cfg.ema_decay)
        self.scored = self.model if self.ema is None else self.ema.module  # the weights validated and saved

    def resume(self, fingerprint: str) -> tuple[LoopState, int]:
        """The state of ``last.pt`` when ``train.resume`` and it was written by this configuration; else a fresh one."""
        self.fingerprint = fingerprint
        resumed = _load_resume_state(self.out_dir / "last.pt", fingerprint) if self.train_cfg.resume else None
        if resumed is None:
            return LoopState(), 1
        self.model.load_state_dict(resumed["state_dict"])
        if self.projection is not None and resumed.get("projection") is not None:
            self.projection.load_state_dict(resumed["projection"])
        self.optimiser.load_state_dict(resumed["optimiser"])
        self.schedule.load_state_dict(resumed["schedule"])
        if self.ema is not None:
            self.ema.load_state_dict(resumed["ema"])
        torch.set_rng_state(resumed["torch_rng"])
        best = {"epoch": resumed["best_epoch"], "val_accuracy": resumed["best"]} if resumed["best_epoch"] > 0 else None
        log.info("%s: resuming after epoch %d (best %.3f at epoch %d)", self.variant, resumed["epoch"],
                 resumed["best"], resumed["best_epoch"])
        return LoopState(resumed["history"], best, resumed["stale"], resumed.get("done", False)), resumed["epoch"] + 1

    def step(self, batch: TripletBatch) -> dict[str, float]:
        """One AdamW step on one batch (and the schedule's and weight average's)."""
        parts = batch_loss(self.model, batch, self.cfg.loss, self.device, self.projection)
        self.optimiser.zero_grad()
        parts["loss"].backward()
        self.optimiser.step()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {**{key: float(parts[key].detach()) for key in LOSS_PARTS},
                "n_correct": int(parts["correct"].sum()), "n_triplets": len(parts["correct"])}

    def run_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.stream.set_epoch(epoch)
        batches = tqdm(self.loader, total=self.steps_per_epoch, desc=f"epoch {epoch}", unit="batch", leave=False)
        sums, n = step_sums(self.step, batches)
        distilled = ({"distill_loss": sums["distill"] / n, "relational_loss": sums["relational"] / n}
                     if self.targets is not None else {})
        return {"train_loss": sums["loss"] / n, "triplet_loss": sums["triplet"] / n, "ntxent_loss": sums["ntxent"] / n,
                **distilled, "train_accuracy": sums["n_correct"] / sums["n_triplets"]}

    def validate(self, epoch: int) -> dict[str, float]:
        batch_size = self.train_cfg.batch_size
        row = {"val_accuracy": triplet_accuracy_on_store(self.scored, self.store, self.val_triplets, batch_size),
               "lr": self.schedule.get_last_lr()[0]}
        if self.ema is not None:
            row["val_accuracy_raw"] = triplet_accuracy_on_store(self.model, self.store, self.val_triplets, batch_size)
        return row

    def save_checkpoint(self, row: dict) -> None:
        torch.save({"state_dict": {k: v.cpu() for k, v in self.scored.state_dict().items()},
                    "config": model_config(self.cfg), "features": self.features.to_dict(), "variant": self.variant,
                    "epoch": row["epoch"], "val_triplet_accuracy": row["val_accuracy"]}, self.out_dir / "model.pt")

    def after_epoch(self, row: dict, state: LoopState, stopped: bool) -> None:
        log.info("%s epoch %d: loss %.4f, train accuracy %.3f, val accuracy %.3f (%.0f s)", self.variant,
                 row["epoch"], row["train_loss"], row["train_accuracy"], row["val_accuracy"], row["seconds"])
        if stopped:
            log.info("%s: early stop at epoch %d, best %d", self.variant, row["epoch"], state.best["epoch"])
        _save_resume_state(self.out_dir / "last.pt", self.model, self.optimiser, self.schedule, row["epoch"],
                           state.history, state.best["val_accuracy"], state.best["epoch"], state.stale, state.done,
                           self.fingerprint, self.ema, self.projection)
        pd.DataFrame(state.history).to_csv(self.out_dir / "history.csv", index=False)


def _distillation(cfg: DictConfig, teacher_path, manifest_path, train_triplets: list, features: FeatureConfig,
                  device: torch.device) -> tuple[CropTargets | None, torch.nn.Module | None]:
    """The teacher's crop targets and the regression's projection when ``cfg.loss`` distils; else ``(None, None)``."""
    if not distils(cfg.loss):
        return None, None
    if teacher_path is None:
        raise ValueError("loss.distill_weight or loss.relational_weight is set: pass the teacher-target store")
    crop_tracks = sorted({excerpt[0] for triplet in train_triplets for excerpt in triplet})
    train_ids = (manifest_io.read(manifest_path).query("split == 'train'")["track_id"].tolist()
                 if manifest_path is not None else crop_tracks)
    targets = CropTargets(teacher_path, crop_tracks, train_ids, features.hop_length / features.sample_rate,
                          cfg.loss.teacher_outputs)
    projection = torch.nn.Linear(int(cfg.model.embedding_dim), targets.dim).to(device)
    log.info("%s: distilling %d-d teacher targets of %d tracks (regression %.2f, relational %.2f)",
             cfg.train.variant, targets.dim, len(targets.tracks), *distillation_weights(cfg.loss))
    return targets, projection


def _write_run_files(run: _EmbedderRun, history: list, best: dict) -> dict:
    """history.csv (and its copy at ``train.curves_path``) and metrics.json of the run folder."""
    pd.DataFrame(history).to_csv(run.out_dir / "history.csv", index=False)
    if run.train_cfg.curves_path:
        curves = Path(run.train_cfg.curves_path)
        curves.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.out_dir / "history.csv", curves)
    metrics = {
        "variant": run.variant,
        "val_triplet_accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "n_parameters": run.n_parameters,
        "size_bytes_fp32": 4 * run.n_parameters,
        "train_seconds": float(sum(row["seconds"] for row in history)),
        "device": run.device.type,
    }
    (run.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _save_resume_state(path: Path, model, optimiser, schedule, epoch: int, history: list, best: float,
                       best_epoch: int, stale: int, done: bool, fingerprint: str,
                       ema: AveragedModel | None = None, projection: torch.nn.Module | None = None) -> None:
    """Write the resume state atomically (a crash mid-write leaves the previous one)."""
    tmp = path.with_suffix(".tmp")
    torch.save({
        "state_dict": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "history": history,
        "best": best,
        "best_epoch": best_epoch,
        "stale": stale,
        "done": done,
        "fingerprint": fingerprint,
        "ema": None if ema is None else ema.state_dict(),
        "projection": None if projection is None else projection.state_dict(),
    }, tmp)
    tmp.replace(path)
