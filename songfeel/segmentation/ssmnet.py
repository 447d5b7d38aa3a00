"""SSM-Net: learned features whose self-similarity matrix (SSM) and novelty curve match the annotation.

After G. Peeters, "Self-Similarity-Based and Novelty-based loss for music
structure analysis", ISMIR 2023 (arXiv 2309.02243):

* :class:`SSMNet` embeds every patch of a track (:mod:`songfeel.segmentation.features`)
  with a small CNN, relates the patches to each other with Transformer encoder
  layers across the whole track, and L2-normalises the result;
* :func:`self_similarity` turns the embeddings into ``S_ij = 1 - ||e_i - e_j||^2 / 4``
  in [0, 1] (equal to ``(1 + cos(e_i, e_j)) / 2`` for unit vectors);
* the novelty curve correlates K learned kernels, initialised as
  Gaussian-tapered Foote checkerboards (:func:`checkerboard`), with the SSM
  centred on every diagonal point, mixes them with a 1x1 convolution and a sigmoid;
* :func:`ssm_loss` (class-balanced BCE against the ground-truth SSM) and
  :func:`novelty_loss` (BCE against a smoothed boundary curve) are mixed as
  ``alpha * ssm + (1 - alpha) * novelty`` (:func:`total_loss`; the paper's best alpha is 0.5);
* :func:`train_step` is one AdamW step on songs given as arrays (the loops: :mod:`songfeel.segmentation.training`).

Optionally (``SSMNetConfig.cepstral_ssm``), the novelty also sees a second, fixed SSM
computed from the same input, :func:`cepstral_similarity`: the cosine similarity of each
patch's cepstrum (coefficients 1..20 of the DCT of its mean log-mel, as MFCCs without c0),
the SSM of Foote's classic MFCC novelty (Foote, ICME 2000). It has learned kernels of its
own, initialised like the others, so that the network starts from Foote's novelty on both
SSMs and learns how much of each to trust. Feeding a network hand-crafted self-similarity
next to learned features follows Grill & Schlueter, "Music boundary detection using neural
networks on combined features and two-level annotations", ISMIR 2015.

Differences from the paper's code, by choice: 3x3 convolutions with ReLU
(instead of 5x5 with PReLU) and a linear projection, sinusoidal positions
added before the Transformer (the paper's code uses none; ``positions="none"``
restores that), kernels normalised to unit L1 norm, and the novelty computed
only on the diagonal (what the paper keeps of its full 2-D convolution).

With the paper's 40-step patches and 20 s kernels (45 patches) and conf's other ``model`` values
(``conf/segmentation/default.yaml``) the model has 146,594 parameters
(CNN 73,568, Transformer 2 x 33,472, novelty kernels 3 x 45 x 45 + 3 biases, mixer 4);
``cepstral_ssm`` adds 3 kernels of the same size and no other weight. With conf's own 20-step
patches and 12 s kernels (27 patches) it has 122,226.

Batches hold songs of different lengths padded to the longest, with a mask
(batch, n_patches) that is True on real patches: attention ignores padded
patches, the SSM is zero outside the song (as the zero padding a song gets
alone) and the losses average per song, then over songs, so every song gets
exactly what it gets alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from songfeel.features import ConfMapping
from songfeel.segmentation.baselines import checkerboard_kernel

log = logging.getLogger(__name__)

#: Probabilities are clipped to [eps, 1 - eps] before the log of the BCE.
_BCE_EPS = 1e-6


@dataclass(frozen=True)
class SSMNetConfig(ConfMapping):
    """Architecture of :class:`SSMNet`.

    Every field comes from conf: the ``model`` section of ``conf/segmentation/default.yaml``, and
    ``n_mels``, ``patch_steps`` and ``patch_hop_seconds`` from its ``features``
    (:func:`songfeel.segmentation.config.model_config`).

    Attributes:
        n_mels: mel bands of a patch.
        patch_steps: steps (time) of a patch.
        channels: output channels of the conv blocks (3x3 conv, ReLU, 2x2 max-pool each).
        embedding_dim: size of the patch embedding and of the Transformer.
        n_layers: Transformer encoder layers across the patches of a track.
        n_heads: attention heads.
        ff_dim: hidden size of the Transformer's feed-forward block.
        dropout: dropout inside the Transformer.
        positions: ``"sinusoidal"`` (added to the patch embeddings, by patch index) or ``"none"``.
        n_kernels: learned novelty kernels (K).
        kernel_seconds: width of a novelty kernel, in seconds (about 20 s in the paper).
        kernel_sigma_seconds: Gaussian taper of the first kernel, in seconds; kernel
            ``k`` starts with ``sigma * (1 - k / (2 * K))`` (a few scales).
        patch_hop_seconds: SSM frame period, in seconds
            (``StructureFeatureConfig.patch_hop_seconds``); converts the kernel sizes to patches.
        novelty_init_gain: the 1x1 mixer starts at weight ``gain / K`` and bias
            ``-gain / 4``, so that half a perfect boundary response (0.25) maps to 0.5.
        cepstral_ssm: add the fixed cepstral SSM (:func:`cepstral_similarity`) to the novelty,
            through K kernels of its own; each SSM's kernels then start at half weight, so
            that a boundary perfect in both responds as one perfect in one SSM alone did.
        n_cepstra: cepstral coefficients of that SSM (1..n_cepstra; c0, the level, is left out).
    """

    n_mels: int
    patch_steps: int
    channels: tuple[int, ...]
    embedding_dim: int
    n_layers: int
    n_heads: int
    ff_dim: int
    dropout: float
    positions: str
    n_kernels: int
    kernel_seconds: float
    kernel_sigma_seconds: float
    patch_hop_seconds: float
    novelty_init_gain: float
    cepstral_ssm: bool
    n_cepstra: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))


    @property
    def kernel_half_patches(self) -> int:
        """Half-width L of the novelty kernels, in patches (kernel size 2L + 1)."""
        return max(1, round(self.kernel_seconds / 2 / self.patch_hop_seconds))

    @property
    def kernel_sigmas_patches(self) -> list[float]:
        """Initial Gaussian taper of each kernel, in patches."""
        sigma = self.kernel_sigma_seconds / self.patch_hop_seconds
        return [sigma * (1 - k / (2 * self.n_kernels)) for k in range(self.n_kernels)]


@dataclass(frozen=True)
class SSMNetTrainConfig(ConfMapping):
    """Knobs of :func:`train_ssmnet`, from the ``train`` section of ``conf/segmentation/default.yaml``
    (:func:`songfeel.segmentation.config.train_config`).

    Attributes:
        alpha: weight of the SSM loss in ``alpha * ssm + (1 - alpha) * novelty``.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: songs per step.
        grad_clip: maximum gradient L2 norm (0 disables clipping).
        novelty_class_balanced: balance boundary and non-boundary frames in the novelty BCE.
        seed: seeds the song order and dropout.
    """

    alpha: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    grad_clip: float
    novelty_class_balanced: bool
    seed: int


def checkerboard(size: int, sigma: float) -> torch.Tensor:
    """Foote's checkerboard kernel with a Gaussian taper (Foote 2000; arXiv 2309.02243, section 3.3).

    ``C[L + m, L + n] = sign(m) * sign(n) * exp(-(m^2 + n^2) / (2 sigma^2))`` for
    ``m, n`` in ``-L..L`` (``L = size // 2``), zero on the centre row and column,
    scaled to unit L1 norm. The within-segment quadrants (top-left,
    bottom-right) are positive and the cross quadrants negative, so the kernel
    sums to zero, flipping either axis negates it, and centred on a boundary
    between two perfectly homogeneous, dissimilar blocks (1 inside, 0 across)
    it responds 0.5.

    Args:
        size: kernel size in SSM frames (patches); odd, so that it centres on (i, i).
        sigma: standard deviation of the Gaussian taper, in SSM frames.

    Returns:
        float32 tensor of shape (size, size).

    Raises:
        ValueError: ``size`` is not an odd integer >= 3, or ``sigma`` is not positive.
    """
    if size < 3 or size % 2 != 1:
        raise ValueError(f"checkerboard size must be an odd integer >= 3, got {size}")
    if not sigma > 0:
        raise ValueError(f"checkerboard sigma must be positive, got {sigma}")
    # Foote's kernel of the baselines, with the taper's sigma in frames rather than in half-sides.
    return torch.from_numpy(checkerboard_kernel(size, 2.0 * sigma / size)).float()


def self_similarity(embeddings: torch.Tensor) -> torch.Tensor:
    """SSM of unit-norm embeddings: ``S_ij = 1 - ||e_i - e_j||^2 / 4`` (arXiv 2309.02243, eq. 1).

    Args:
        embeddings: shape (batch, n_patches, dim), each row of unit L2 norm.

    Returns:
        shape (batch, n_patches, n_patches), in [0, 1], ones on the diagonal.

    Raises:
        ValueError: ``embeddings`` is not 3-D.
    """
    if embeddings.dim() != 3:
        raise ValueError(f"embeddings must have shape (batch, n_patches, dim), got {tuple(embeddings.shape)}")
    # ||e_i - e_j||^2 = 2 - 2 e_i.e_j for unit vectors; the Gram form keeps the diagonal exact.
    gram = embeddings @ embeddings.transpose(1, 2)
    return ((1 + gram) / 2).clamp(0.0, 1.0)


def dct_matrix(n_mels: int, n_cepstra: int) -> torch.Tensor:
    """Rows 1..n_cepstra of the orthonormal DCT-II over ``n_mels`` bands (MFCC's transform, without c0).

    ``x @ dct_matrix(n_mels, n).T`` gives the cepstral coefficients 1..n of log-mel frames ``x``
    (batch, n_mels), as ``scipy.fft.dct(x, type=2, norm="ortho")[:, 1:n + 1]``.

    Returns:
        float32 tensor of shape (n_cepstra, n_mels).

    Raises:
        ValueError: ``n_cepstra`` is not in 1..n_mels - 1.
    """
    if not 1 <= n_cepstra < n_mels:
        raise ValueError(f"n_cepstra must be in 1..{n_mels - 1} for {n_mels} mel bands, got {n_cepstra}")
    return torch.from_numpy(scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[1 : n_cepstra + 1]).float()


def cepstral_similarity(patches: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """Fixed SSM of the patches' cepstra: ``(1 + cos(c_i, c_j)) / 2``, in [0, 1] (Foote, ICME 2000).

    Each patch's log-mel steps are averaged, turned into cepstral coefficients by
    ``transform`` (:func:`dct_matrix`) and compared by cosine similarity, as the MFCC SSM
    of Foote's novelty (:mod:`songfeel.segmentation.baselines`) compares MFCC frames.

    Args:
        patches: (batch, n_patches, patch_steps, n_mels).
        transform: (n_cepstra, n_mels), from :func:`dct_matrix`.

    Returns:
        (batch, n_patches, n_patches), ones on the diagonal (a patch with an all-zero
        cepstrum gets 0.5 against every other).
    """
    return self_similarity(F.normalize(patches.mean(dim=2) @ transform.T, dim=-1))


def _diagonal_windows(ssm: torch.Tensor, half: int) -> torch.Tensor:
    """The (2 half + 1)^2 block of ``ssm`` centred on each (i, i), zero outside: (batch, n, 2h+1, 2h+1)."""
    n = ssm.shape[-1]
    padded = F.pad(ssm, (half, half, half, half))
    rows = torch.arange(n, device=ssm.device)[:, None] + torch.arange(2 * half + 1, device=ssm.device)[None, :]
    return padded[:, rows[:, :, None], rows[:, None, :]]


def _sinusoidal_positions(n: int, dim: int, device) -> torch.Tensor:
    """Transformer sinusoidal positions (Vaswani et al. 2017), shape (n, dim)."""
    position = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


class SSMNetOutput(NamedTuple):
    """What :class:`SSMNet` computes for a batch of tracks.

    Attributes:
        embeddings: (batch, n_patches, embedding_dim), unit L2 norm.
        ssm: (batch, n_patches, n_patches) in [0, 1]; zero where either patch is padding.
        novelty: (batch, n_patches) in [0, 1]; zero on padding.
    """

    embeddings: torch.Tensor
    ssm: torch.Tensor
    novelty: torch.Tensor


class SSMNet(nn.Module):
    """SSM-Net (arXiv 2309.02243): patch CNN, Transformer across the track, SSM and learned novelty.

    Call it on patches (batch, n_patches, patch_steps, n_mels) and an optional
    mask (batch, n_patches), True on real patches, to get an :class:`SSMNetOutput`.
    Seed torch before constructing it for a reproducible initialisation.
    """

    def __init__(self, cfg: SSMNetConfig) -> None:
        super().__init__()
        if cfg.positions not in ("sinusoidal", "none"):
            raise ValueError(f"positions must be 'sinusoidal' or 'none', got {cfg.positions!r}")
        self.cfg = cfg
        blocks, in_channels = [], 1
        height, width = cfg.n_mels, cfg.patch_steps
        for out_channels in cfg.channels:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"{len(cfg.channels)} pooling blocks leave nothing of a {cfg.n_mels} x {cfg.patch_steps} patch")
        self.conv = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(in_channels * height * width, cfg.embedding_dim))
        layer = nn.TransformerEncoderLayer(
            cfg.embedding_dim, cfg.n_heads, cfg.ff_dim, cfg.dropout, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        size = 2 * cfg.kernel_half_patches + 1
        initial = torch.stack([checkerboard(size, s) for s in cfg.kernel_sigmas_patches])
        if cfg.cepstral_ssm:
            initial = initial / 2  # two SSMs: a boundary perfect in both responds 0.5, as in one SSM alone
            self.register_buffer("cepstral_transform", dct_matrix(cfg.n_mels, cfg.n_cepstra), persistent=False)
            self.cepstral_kernels = nn.Parameter(initial.clone())
        self.kernels = nn.Parameter(initial)
        self.kernel_bias = nn.Parameter(torch.zeros(cfg.n_kernels))
        self.mixer = nn.Conv1d(cfg.n_kernels, 1, kernel_size=1)
        with torch.no_grad():
            self.mixer.weight.fill_(cfg.novelty_init_gain / cfg.n_kernels)
            self.mixer.bias.fill_(-cfg.novelty_init_gain / 4)

    @property
    def n_parameters(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def embed(self, patches: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-norm embedding of every patch, in the context of its track.

        Args:
            patches: (batch, n_patches, patch_steps, n_mels).
            mask: (batch, n_patches) bool, True on real patches; None for all real.

        Returns:
            (batch, n_patches, embedding_dim), unit L2 norm.

        Raises:
            ValueError: the shapes do not match the configuration.
        """
        batch, n, steps, mels = self._check(patches, mask)
        x = self.conv(patches.reshape(batch * n, 1, steps, mels).transpose(2, 3)).reshape(batch, n, -1)
        if self.cfg.positions == "sinusoidal":
            x = x + _sinusoidal_positions(n, x.shape[-1], x.device)
        x = self.transformer(x, src_key_padding_mask=None if mask is None else ~mask)
        return F.normalize(x, dim=-1)

    def novelty(self, ssm: torch.Tensor, mask: torch.Tensor | None = None,
                cepstral: torch.Tensor | None = None) -> torch.Tensor:
        """Novelty curve of an SSM through the learned kernels (arXiv 2309.02243, section 3.3).

        Each kernel is correlated with the SSM centred on every (i, i), with zero
        padding outside the track; the K responses are mixed by the 1x1
        convolution and squashed by a sigmoid. With ``cfg.cepstral_ssm``, the
        cepstral SSM's kernels add their responses to those of ``ssm``'s.

        Args:
            ssm: (batch, n_patches, n_patches), zero where either patch is padding.
            mask: (batch, n_patches) bool, True on real patches; None for all real.
            cepstral: (batch, n_patches, n_patches), the cepstral SSM
                (:func:`cepstral_similarity`), zero where either patch is padding;
                required with ``cfg.cepstral_ssm``, refused without it.

        Returns:
            (batch, n_patches) in [0, 1]; zero on padding.

        Raises:
            ValueError: ``ssm`` is not (batch, n, n), or ``cepstral`` is missing, not
                wanted or of another shape.
        """
        if ssm.dim() != 3 or ssm.shape[1] != ssm.shape[2]:
            raise ValueError(f"ssm must have shape (batch, n, n), got {tuple(ssm.shape)}")
        if (cepstral is not None) != self.cfg.cepstral_ssm:
            raise ValueError("a cepstral SSM is required with cepstral_ssm and refused without it")
        responses = self._kernel_responses(ssm, self.kernels) + self.kernel_bias[:, None]
        if cepstral is not None:
            if cepstral.shape != ssm.shape:
                raise ValueError(f"cepstral SSM {tuple(cepstral.shape)} and SSM {tuple(ssm.shape)} differ in shape")
            responses = responses + self._kernel_responses(cepstral, self.cepstral_kernels)
        novelty = torch.sigmoid(self.mixer(responses)[:, 0])
        return novelty if mask is None else novelty * mask

    def _kernel_responses(self, ssm: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Each of ``kernels`` (K, 2h+1, 2h+1) correlated with ``ssm`` around every (i, i): (batch, K, n)."""
        return torch.einsum("bnxy,kxy->bkn", _diagonal_windows(ssm, self.cfg.kernel_half_patches), kernels)

    def forward(self, patches: torch.Tensor, mask: torch.Tensor | None = None) -> SSMNetOutput:
        """Embeddings, SSM and novelty curve of a batch of tracks (shapes in :class:`SSMNetOutput`)."""
        embeddings = self.embed(patches, mask)
        ssm = self_similarity(embeddings)
        cepstral = cepstral_similarity(patches, self.cepstral_transform) if self.cfg.cepstral_ssm else None
        if mask is not None:
            pairs = mask[:, :, None] & mask[:, None, :]
            ssm = ssm * pairs
            cepstral = None if cepstral is None else cepstral * pairs
        return SSMNetOutput(embeddings, ssm, self.novelty(ssm, mask, cepstral))

    def _check(self, patches: torch.Tensor, mask: torch.Tensor | None) -> tuple[int, int, int, int]:
        expected = (self.cfg.patch_steps, self.cfg.n_mels)
        if patches.dim() != 4 or tuple(patches.shape[2:]) != expected:
            raise ValueError(f"patches must have shape (batch, n_patches, {expected[0]}, {expected[1]}), "
                             f"got {tuple(patches.shape)}")
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(patches.shape[:2])):
            raise ValueError(f"mask must be bool of shape {tuple(patches.shape[:2])}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        return tuple(patches.shape)


# --- Losses ------------------------------------------------------------------------------------------


def _bce_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise ``-log p`` and ``-log (1 - p)``, with p clipped to [eps, 1 - eps]."""
    pred = pred.clamp(_BCE_EPS, 1 - _BCE_EPS)
    return -torch.log(pred), -torch.log1p(-pred)


def _check_pair(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if mask is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"{name}: mask must be bool of shape {tuple(pred.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
    if not mask.any(dim=1).all():
        raise ValueError(f"{name}: every song needs at least one real patch in the mask")
    return mask


def _balanced_bce(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-song class-balanced BCE over the ``valid`` elements, averaged over songs; inputs (batch, ...)."""
    target = target * valid
    loss_pos, loss_neg = _bce_terms(pred, target)
    dims = tuple(range(1, pred.dim()))
    positive = target.sum(dims)
    negative = ((1 - target) * valid).sum(dims)
    mean_pos = (target * loss_pos).sum(dims) / positive.clamp_min(1e-12)
    mean_neg = ((1 - target) * valid * loss_neg).sum(dims) / negative.clamp_min(1e-12)
    # A class absent from a song (one segment: no negatives) drops out; the other takes its weight.
    has_pos, has_neg = (positive > 0).float(), (negative > 0).float()
    per_song = (has_pos * mean_pos + has_neg * mean_neg) / (has_pos + has_neg)
    return per_song.mean()


def ssm_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Class-balanced BCE between the predicted and the ground-truth SSM (arXiv 2309.02243, eq. 2).

    Per song, ``0.5 * mean over positive pairs of -log S_ij + 0.5 * mean over
    negative pairs of -log(1 - S_ij)``, so that each class (same segment label or
    not) weighs the same whatever its share of the matrix (soft targets weigh
    each pair by ``t`` and ``1 - t``); averaged over songs. Pairs with a padded
    patch are ignored. Probabilities are clipped to [1e-6, 1 - 1e-6].

    Args:
        pred: (batch, n_patches, n_patches), in [0, 1].
        target: (batch, n_patches, n_patches), in [0, 1]: 1 where patches i and j share a segment label.
        mask: (batch, n_patches) bool, True on real patches; None for all real.

    Returns:
        scalar tensor.

    Raises:
        ValueError: the shapes disagree, or a song has no real patch.
    """
    mask = _check_pair(pred, target, mask, "ssm_loss")
    return _balanced_bce(pred, target, (mask[:, :, None] & mask[:, None, :]).to(pred.dtype))


def novelty_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, class_balanced: bool = False
) -> torch.Tensor:
    """BCE between the predicted and the ground-truth novelty curve (arXiv 2309.02243, eq. 3).

    Per song, the mean BCE over its real patches (or, with ``class_balanced``,
    the class-balanced form of :func:`ssm_loss`), averaged over songs.

    Args:
        pred: (batch, n_patches), in [0, 1].
        target: (batch, n_patches), in [0, 1]: boundary impulses smoothed by a small kernel.
        mask: (batch, n_patches) bool, True on real patches; None for all real.
        class_balanced: weigh boundary and non-boundary patches equally.

    Returns:
        scalar tensor.

    Raises:
        ValueError: the shapes disagree, or a song has no real patch.
    """
    mask = _check_pair(pred, target, mask, "novelty_loss")
    valid = mask.to(pred.dtype)
    if class_balanced:
        return _balanced_bce(pred, target, valid)
    loss_pos, loss_neg = _bce_terms(pred, target)
    per_patch = (target * loss_pos + (1 - target) * loss_neg) * valid
    return (per_patch.sum(1) / valid.sum(1)).mean()


def total_loss(ssm: torch.Tensor, novelty: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * ssm + (1 - alpha) * novelty`` (arXiv 2309.02243, eq. 4; the paper's best alpha is 0.5).

    Raises:
        ValueError: ``alpha`` is outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * ssm + (1 - alpha) * novelty


# --- Training --------------------------------------------------------------------------------------


class SongBatch(NamedTuple):
    """Songs padded to the longest.

    Attributes:
        patches: (batch, n_patches, patch_steps, n_mels), zero on padding.
        ssm: (batch, n_patches, n_patches) target SSM, zero on padding.
        novelty: (batch, n_patches) target novelty curve, zero on padding.
        mask: (batch, n_patches) bool, True on real patches.
    """

    patches: torch.Tensor
    ssm: torch.Tensor
    novelty: torch.Tensor
    mask: torch.Tensor


#: One training song: patches (n, patch_steps, n_mels), target SSM (n, n), target novelty (n,), as arrays or tensors.
Song = tuple


def collate_songs(songs: Sequence[Song]) -> SongBatch:
    """Pad songs ``(patches (n, patch_steps, n_mels), ssm (n, n), novelty (n,))`` into a :class:`SongBatch`.

    Raises:
        ValueError: no songs, or a song whose arrays disagree in shape (its index is named).
    """
    if not songs:
        raise ValueError("no songs to collate")
    songs = [as_song(song, index) for index, song in enumerate(songs)]
    n_max = max(song[0].shape[0] for song in songs)
    batch = len(songs)
    patches = torch.zeros((batch, n_max) + tuple(songs[0][0].shape[1:]))
    ssm = torch.zeros(batch, n_max, n_max)
    novelty = torch.zeros(batch, n_max)
    mask = torch.zeros(batch, n_max, dtype=torch.bool)
    for b, (song_patches, song_ssm, song_novelty) in enumerate(songs):
        n = song_patches.shape[0]
        patches[b, :n], ssm[b, :n, :n], novelty[b, :n], mask[b, :n] = song_patches, song_ssm, song_novelty, True
    return SongBatch(patches, ssm, novelty, mask)


def as_song(song: Song, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    patches, ssm, novelty = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in song)
    n = patches.shape[0]
    if patches.dim() != 3 or n == 0 or tuple(ssm.shape) != (n, n) or tuple(novelty.shape) != (n,):
        raise ValueError(f"song {index}: expected patches (n, patch_steps, n_mels), ssm (n, n), novelty (n,), "
                         f"got {tuple(patches.shape)}, {tuple(ssm.shape)}, {tuple(novelty.shape)}")
    for name, values in (("ssm", ssm), ("novelty", novelty)):
        if not (values.min() >= 0 and values.max() <= 1):
            raise ValueError(f"song {index}: target {name} must lie in [0, 1]")
    return patches, ssm, novelty


def train_step(model: SSMNet, optimizer: torch.optim.Optimizer, songs: Sequence[Song],
               cfg: SSMNetTrainConfig) -> tuple[float, float, float]:
    """One AdamW step on a batch of songs: ``alpha * ssm_loss + (1 - alpha) * novelty_loss``, clipped gradients.

    Args:
        songs: the batch, as :func:`collate_songs` takes it.

    Returns:
        the step's SSM, novelty and total loss.
    """
    batch = collate_songs(songs)
    out = model(batch.patches, batch.mask)
    loss_ssm = ssm_loss(out.ssm, batch.ssm, batch.mask)
    loss_novelty = novelty_loss(out.novelty, batch.novelty, batch.mask, cfg.novelty_class_balanced)
    loss = total_loss(loss_ssm, loss_novelty, cfg.alpha)
    optimizer.zero_grad()
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss_ssm.item(), loss_novelty.item(), loss.item()
