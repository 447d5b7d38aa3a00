"""Teacher pretraining of SSM-Net's patch encoder: distillation from a music teacher on whole songs.

Before SSM-Net learns its SSM and novelty losses on medleys (:mod:`songfeel.segmentation.training`), its
encoder (patch CNN and Transformer, :meth:`SSMNet.embed`) can first learn to carry what a music model
trained on far more songs hears in each patch. The teacher is musicnn (Pons & Serra, ISMIR 2019 LBD),
whose per-patch outputs stage 02 cached (:mod:`songfeel.teacher.targets`: 3 s patches every 1.5 s).
Every SSM-Net patch (one SSM frame) is paired with the teacher patch whose centre lies nearest its own
centre, and the teacher's outputs are z-scored with the training songs' patch statistics. Two losses:

* ``regression``: a linear head (``embedding_dim -> teacher width``, dropped after pretraining)
  regresses each unit-norm patch embedding, scaled by ``sqrt(embedding_dim)``, onto the teacher's
  z-scored outputs (mean squared error),
  the feature distillation of FitNets (Romero et al., ICLR 2015);
* ``similarity``: the SSM of the embeddings (:func:`~songfeel.segmentation.ssmnet.self_similarity`,
  ``(1 + cos) / 2``) matches the teacher's SSM, ``(1 + cos) / 2`` of the z-scored outputs (mean squared
  error over all pairs), the relational distillation of Park et al., CVPR 2019 ("RKD").

The teacher needs no boundaries, so pretraining uses every training song: each step embeds a random
``crop_seconds`` excerpt of one song (a full-length song holds several sections, as a medley does). The
teacher runs only in stage 02; SSM-Net's inference stays torch-only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from songfeel.features import ConfMapping
from songfeel.loop import step_sums, train_epochs
from songfeel.segmentation.features import (
    StructureFeatureConfig,
    patch_times,
    patches,
    structure_features,
)
from songfeel.segmentation.ssmnet import SSMNet, self_similarity
from songfeel.teacher.targets import PATCH_SECONDS, CropTargets, TeacherTargets

log = logging.getLogger(__name__)

#: Losses of :func:`pretrain_with_teacher`.
PRETRAIN_LOSSES = ("regression", "similarity")


@dataclass(frozen=True)
class TeacherPretrainConfig(ConfMapping):
    """Knobs of :func:`pretrain_with_teacher`, from ``segmentation.pretrain`` (``conf/segmentation/default.yaml``).

    Attributes:
        epochs: passes over the training songs (0: no pretraining).
        loss: ``"regression"`` or ``"similarity"`` (this module's docstring).
        crop_seconds: length of the excerpt of a song embedded per step, seconds.
        outputs: the teacher outputs to distil (e.g. ``["pool5"]``); empty: every stored output.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: maximum gradient L2 norm (0 disables clipping).
        seed: seeds the song order, the crops and the head.
    """

    epochs: int
    loss: str
    crop_seconds: float
    outputs: tuple[str, ...]
    learning_rate: float
    weight_decay: float
    grad_clip: float
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs or ()))
        if self.loss not in PRETRAIN_LOSSES:
            raise ValueError(f"pretrain.loss must be one of {PRETRAIN_LOSSES}, got {self.loss!r}")
        if self.epochs < 0 or not self.crop_seconds > 0:
            raise ValueError(f"pretrain.epochs must be >= 0 and crop_seconds > 0, got {self.epochs}, "
                             f"{self.crop_seconds}")


def teacher_frames(starts: np.ndarray, targets: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The teacher patch nearest each SSM frame: for every time, the row of ``targets`` whose patch centre
    (start + :data:`~songfeel.teacher.targets.PATCH_SECONDS` / 2) lies nearest.

    Args:
        starts: (n_teacher,) teacher patch starts, seconds, increasing.
        targets: (n_teacher, dim) teacher outputs.
        times: (n_frames,) SSM frame (patch centre) times, seconds.

    Returns:
        (n_frames, dim), rows of ``targets``.

    Raises:
        ValueError: no teacher patch, or ``starts`` and ``targets`` differ in length.
    """
    starts = np.asarray(starts, dtype=np.float64)
    if len(starts) == 0 or len(starts) != len(targets):
        raise ValueError(f"{len(starts)} teacher patch starts for {len(targets)} target rows")
    centres = starts + PATCH_SECONDS / 2
    # argmin takes the earlier patch on a tie: (n_frames, n_teacher) distances, a few hundred each way per song.
    return np.asarray(targets)[np.abs(np.asarray(times)[:, None] - centres[None, :]).argmin(axis=1)]


class TeacherSongs:
    """Training songs paired with their z-scored teacher outputs, for :func:`pretrain_with_teacher`.

    Args:
        audio: source path -> mono samples (n_samples,) at the front end's sample rate (e.g. a
            :class:`~songfeel.segmentation.medleys.MedleySampler`'s ``audio``).
        store_path: the teacher-target store of stage 02; its tracks are matched by their ``path`` attribute.
        outputs: teacher outputs to use (empty: all stored).

    Attributes:
        songs: path -> (teacher patch starts (n,), z-scored targets (n, dim) float32).
        dim: the target width.
        missing: the source paths without teacher targets (left out, logged).

    Raises:
        FileNotFoundError: the store does not exist.
        ValueError: no source song has teacher targets.
    """

    def __init__(self, audio: Mapping[str, np.ndarray], store_path: str | Path, outputs=()) -> None:
        self.audio = audio
        wanted = {str(Path(p).resolve()): p for p in audio}
        with TeacherTargets(store_path) as store:
            ids = {wanted[source]: track_id for track_id in store.track_ids
                   if (source := str(Path(str(store.attrs(track_id)["path"])).resolve())) in wanted}
        self.missing = sorted(set(audio) - set(ids))
        if not ids:
            raise ValueError(f"{store_path}: none of the {len(audio)} training songs has teacher targets")
        if self.missing:
            log.warning("teacher pretraining: %d of %d songs have no teacher targets and are left out: %s",
                        len(self.missing), len(audio), self.missing[:5])
        # Every patch of these songs, z-scored with their own statistics (CropTargets' mean and floored std).
        targets = CropTargets(store_path, list(ids.values()), list(ids.values()), 1.0, list(outputs) or None)
        self.songs = {path: (targets.tracks[track_id][0], targets.standardise(targets.tracks[track_id][1])
                             .astype(np.float32)) for path, track_id in sorted(ids.items())}
        self.dim = targets.dim

    def crop(self, path: str, features: StructureFeatureConfig, crop_seconds: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random excerpt of ``path`` as SSM-Net patches and its teacher targets.

        Returns:
            patches (n_patches, patch_steps, n_mels) float32 and targets (n_patches, dim) float32.

        Raises:
            ValueError: the excerpt is silent or shorter than one patch.
        """
        audio = self.audio[path]
        length = min(len(audio), round(crop_seconds * features.sample_rate))
        start = int(rng.integers(0, len(audio) - length + 1))
        song_patches = patches(structure_features(np.asarray(audio[start : start + length], np.float32), features),
                               features)
        times = patch_times(len(song_patches), features) + start / features.sample_rate
        starts, targets = self.songs[path]
        return song_patches, teacher_frames(starts, targets, times)


def teacher_loss(embeddings: torch.Tensor, targets: torch.Tensor, loss: str,
                 head: nn.Module | None = None) -> torch.Tensor:
    """The distillation loss of one song (this module's docstring).

    Args:
        embeddings: (n_patches, embedding_dim), unit L2 norm.
        targets: (n_patches, dim), z-scored teacher outputs.
        loss: ``"regression"`` (needs ``head``) or ``"similarity"``.
        head: the linear head of ``regression``.

    Returns:
        a scalar tensor.

    Raises:
        ValueError: an unknown ``loss``, or ``regression`` without a head.
    """
    if loss == "regression":
        if head is None:
            raise ValueError("the regression loss needs a head")
        # Unit-norm rows hold components of about 1 / sqrt(dim); scaled to about 1, the head starts in the
        # targets' range (z-scored: unit variance) instead of needing weights sqrt(dim) times larger.
        return F.mse_loss(head(embeddings * math.sqrt(embeddings.shape[-1])), targets)
    if loss == "similarity":
        teacher = F.normalize(targets, dim=-1)
        return F.mse_loss(self_similarity(embeddings[None])[0], (1 + teacher @ teacher.T) / 2)
    raise ValueError(f"unknown teacher loss {loss!r}; expected one of {PRETRAIN_LOSSES}")


def pretrain_with_teacher(model: SSMNet, songs: TeacherSongs, features: StructureFeatureConfig,
                          cfg: TeacherPretrainConfig, progress: bool = True) -> pd.DataFrame:
    """Train ``model``'s encoder in place to carry the teacher's view of each patch.

    Every epoch visits the songs once in a seeded order, one random ``cfg.crop_seconds`` excerpt per
    song and one AdamW step per excerpt. The novelty kernels and mixer get no gradient. The regression
    head is created here and dropped afterwards.

    Args:
        model: the SSM-Net to pretrain (its encoder changes).
        songs: the training songs with their teacher targets.
        features: SSM-Net's front end.
        cfg: the pretraining knobs; ``epochs == 0`` returns an empty history at once.
        progress: show a tqdm bar.

    Returns:
        one row per epoch: ``epoch, teacher_loss`` (mean over the epoch's steps), ``seconds``, ``skipped``
        (excerpts too short or silent).
    """
    if cfg.epochs == 0:
        return pd.DataFrame(columns=["epoch", "teacher_loss", "seconds", "skipped"])
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = nn.Linear(model.cfg.embedding_dim, songs.dim) if cfg.loss == "regression" else None
    encoder = [*model.conv.parameters(), *model.transformer.parameters()]
    trained = encoder + ([] if head is None else list(head.parameters()))
    optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    paths = list(songs.songs)
    log.info("teacher pretraining (%s loss) of SSM-Net's encoder on %d songs, %d epochs of %.0f s excerpts",
             cfg.loss, len(paths), cfg.epochs, cfg.crop_seconds)
    skipped = []

    def step(path: str) -> dict[str, float]:
        try:
            song_patches, targets = songs.crop(path, features, cfg.crop_seconds, rng)
        except ValueError as exc:
            skipped.append(path)
            log.warning("teacher pretraining: skipping an excerpt of %s: %s", path, exc)
            return {}
        embeddings = model.embed(torch.from_numpy(song_patches)[None])[0]
        loss = teacher_loss(embeddings, torch.from_numpy(targets), cfg.loss, head)
        optimizer.zero_grad()
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
        optimizer.step()
        return {"teacher_loss": loss.item()}

    def run_epoch(epoch: int) -> dict[str, float]:
        model.train()
        skipped.clear()
        sums, n_steps = step_sums(step, (paths[i] for i in rng.permutation(len(paths))))
        n_used = max(1, n_steps - len(skipped))
        return {"teacher_loss": sums.get("teacher_loss", float("nan")) / n_used, "skipped": len(skipped)}

    state = train_epochs(cfg.epochs, run_epoch, lambda epoch: {}, is_better=lambda row, best: False,
                         after_epoch=lambda row, state, stopped: log.info(
                             "teacher pretraining epoch %d: loss %.4f", row["epoch"], row["teacher_loss"]),
                         desc="pretrain SSM-Net on the teacher", progress=progress)
    model.eval()
    return pd.DataFrame(state.history)
