"""Stage 04: train one embedder variant on triplets from the feature store.

Training streams random crops of each triplet excerpt out of core
(:class:`songfeel.sampler.TripletStream`: per-anchor-track streams multiplexed
``n_active`` at a time, read through a DataLoader with ``num_workers`` workers;
one crop length per batch), adds a random gain, and minimises the triplet margin
loss with AdamW and a cosine learning-rate schedule. After every epoch it measures the validation
triplet accuracy on whole excerpts; accuracy, not loss, picks the checkpoint,
and training stops early when it has not improved for ``patience`` epochs.

A run folder holds ``model.pt`` (best checkpoint), ``history.csv`` (one row per
epoch: ``epoch, train_loss, train_accuracy, val_accuracy, lr``) and
``metrics.json`` (``variant, val_triplet_accuracy, best_epoch, n_parameters``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from songfeel.embed import triplet_accuracy_on_store, triplet_excerpts
from songfeel.losses import triplet_correct, triplet_margin_loss
from songfeel.models.embedder import build_embedder, model_config, parameter_count
from songfeel.sampler import TripletStream, collate_triplets
from songfeel.store import FeatureStore

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_loader(cfg: DictConfig, store_path: str | Path, triplets: list[tuple],
                    crop_frames: tuple[int, int]) -> tuple[TripletStream, DataLoader]:
    """The training stream and its DataLoader, from the ``train`` config group.

    Each batch is three float32 tensors (batch, frames, n_mels) in dB: anchor,
    positive and negative crops of one length (``crop_frames`` range, in frames).
    """
    train_cfg = cfg.train
    stream = TripletStream(
        store_path,
        triplets,
        crop_frames,
        gain_db=train_cfg.gain_db,
        n_active=train_cfg.n_active,
        stream_rate=train_cfg.stream_rate,
        samples_per_epoch=train_cfg.samples_per_epoch,
        crop_group=train_cfg.batch_size,
        seed=train_cfg.seed,
    )
    loader = DataLoader(
        stream,
        batch_size=train_cfg.batch_size,
        num_workers=train_cfg.num_workers,
        collate_fn=collate_triplets,
        generator=torch.Generator().manual_seed(train_cfg.seed),
    )
    return stream, loader


def train_variant(cfg: DictConfig, store_path: str | Path, triplets_path: str | Path, out_dir: str | Path) -> dict:
    """Train the variant described by ``cfg`` and write its run folder.

    Args:
        cfg: the composed config (``window``, ``model``, ``head``, ``train``).
        store_path: the HDF5 feature store of stage 02.
        triplets_path: the triplet CSV of stage 03.
        out_dir: the run folder to write.

    Returns:
        the run's metrics (also written to ``out_dir/metrics.json``).

    Raises:
        ValueError: there are no training or no validation triplets.
    """
    train_cfg = cfg.train
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(train_cfg.seed)
    torch.set_num_threads(train_cfg.num_threads)
    variant = f"{cfg.window.name}-{cfg.head.name}"
    table = pd.read_csv(triplets_path)
    with FeatureStore(store_path) as store:
        train_triplets = triplet_excerpts(table[table["split"] == "train"], store)
        val_triplets = triplet_excerpts(table[table["split"] == "val"], store)
        if not train_triplets or not val_triplets:
            raise ValueError(f"{triplets_path}: need train and val triplets, got {len(train_triplets)} and {len(val_triplets)}")
        features = store.config
        model = build_embedder(cfg, features)
        n_parameters = parameter_count(model)
        log.info("%s: %d parameters (%.1f kB fp32), %d train / %d val triplets",
                 variant, n_parameters, n_parameters * 4 / 1e3, len(train_triplets), len(val_triplets))
        optimiser = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        crop_range = tuple(features.seconds_to_frames(s) for s in train_cfg.crop_seconds)
        stream, loader = training_loader(cfg, store_path, train_triplets, crop_range)
        steps_per_epoch = stream.batches_per_epoch(train_cfg.batch_size, train_cfg.num_workers)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=train_cfg.epochs * steps_per_epoch)
        history, best, best_epoch, stale = [], -1.0, -1, 0
        for epoch in tqdm(range(1, train_cfg.epochs + 1), desc=variant, unit="epoch"):
            model.train()
            stream.set_epoch(epoch)
            losses, correct = [], []
            for crops in loader:
                anchor, positive, negative = (model(x) for x in crops)
                loss = triplet_margin_loss(anchor, positive, negative, train_cfg.margin)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
                correct.extend(triplet_correct(anchor, positive, negative).tolist())
            val_accuracy = triplet_accuracy_on_store(model, store, val_triplets, train_cfg.batch_size)
            history.append({
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "train_accuracy": float(np.mean(correct)),
                "val_accuracy": val_accuracy,
                "lr": schedule.get_last_lr()[0],
            })
            log.info("%s epoch %d: loss %.4f, val accuracy %.3f", variant, epoch, history[-1]["train_loss"], val_accuracy)
            if val_accuracy > best:
                best, best_epoch, stale = val_accuracy, epoch, 0
                torch.save({
                    "state_dict": model.state_dict(),
                    "config": model_config(cfg),
                    "features": features.to_dict(),
                    "variant": variant,
                    "epoch": epoch,
                    "val_triplet_accuracy": val_accuracy,
                }, out_dir / "model.pt")
            else:
                stale += 1
                if stale >= train_cfg.patience:
                    log.info("%s: early stop at epoch %d, best %d", variant, epoch, best_epoch)
                    break
    pd.DataFrame(history).to_csv(out_dir / "history.csv", index=False)
    metrics = {
        "variant": variant,
        "val_triplet_accuracy": best,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "n_parameters": n_parameters,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
