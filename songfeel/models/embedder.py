"""The song embedder: log-mel frames -> ~1 s windows -> CNN -> sequence head -> 32-d.

Windows are ``chunked`` (hop = window) or ``sliding`` (hop < window); both are
gathered from the same frames at run time, never stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from songfeel.features import FeatureConfig
from songfeel.models.encoder import WindowEncoder
from songfeel.models.frontend import LogMelFrontend


def window_count(n_frames: torch.Tensor | int, window_frames: int, hop_frames: int):
    """Number of windows in ``n_frames`` frames; at least 1 (short input is padded: see :func:`gather_windows`)."""
    if isinstance(n_frames, torch.Tensor):
        # Non-negative operands, so truncation (a plain ONNX Div, which tract can reason about) is the floor.
        return torch.div(torch.clamp(n_frames - window_frames, min=0), hop_frames, rounding_mode="trunc") + 1
    return max(1, (n_frames - window_frames) // hop_frames + 1)


def gather_windows(frames: torch.Tensor, window_frames: int, hop_frames: int) -> torch.Tensor:
    """Windows of frames as a gather (exports to ONNX with a dynamic length).

    Args:
        frames: (batch, n_frames, n_mels).

    Returns:
        (batch, n_windows, window_frames, n_mels), with
        ``n_windows = max(1, (n_frames - window_frames) // hop_frames + 1)``.
        Input shorter than one window repeats its last frame (training crops never are;
        :class:`AudioEmbedder` pads short songs with silent frames before this).
    """
    n_frames = torch.tensor(frames.shape[1]) if not isinstance(frames.shape[1], torch.Tensor) else frames.shape[1]
    n_windows = window_count(n_frames, window_frames, hop_frames)
    index = torch.arange(n_windows)[:, None] * hop_frames + torch.arange(window_frames)[None, :]
    index = torch.clamp(index, max=n_frames - 1)
    return frames[:, index]


class SongEmbedder(nn.Module):
    """Log-mel frames to an L2-normalised song embedding.

    Input: ``frames`` (batch, n_frames, n_mels) in dB and optional ``lengths``
    (batch,) in frames for zero-padded batches.
    Output: (batch, embedding_dim), unit L2 norm.
    """

    def __init__(
        self,
        n_mels: int,
        window_frames: int,
        hop_frames: int,
        encoder: WindowEncoder,
        head: nn.Module,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        if not 0 < hop_frames <= window_frames:
            raise ValueError(f"hop_frames {hop_frames} must be in (0, window_frames={window_frames}]")
        self.window_frames = window_frames
        self.hop_frames = hop_frames
        self.input_norm = nn.BatchNorm1d(n_mels)
        self.encoder = encoder
        self.head = head
        self.projection = nn.Linear(head.out_dim, embedding_dim)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        frames = self.input_norm(frames.transpose(1, 2)).transpose(1, 2)
        windows = gather_windows(frames, self.window_frames, self.hop_frames)  # (B, N, W, M)
        batch, n_windows = windows.shape[0], windows.shape[1]
        features = self.encoder(windows.flatten(0, 1).transpose(1, 2))  # (B * N, D)
        features = features.reshape(batch, n_windows, -1)
        if lengths is None:
            mask = torch.ones(batch, n_windows, dtype=torch.bool, device=frames.device)
        else:
            valid = window_count(lengths, self.window_frames, self.hop_frames)
            mask = torch.arange(n_windows, device=frames.device)[None, :] < valid[:, None]
        pooled = self.head(features, mask)
        return nn.functional.normalize(self.projection(pooled), dim=-1)


class AudioEmbedder(nn.Module):
    """MECOMP's contract: raw mono audio at 22050 Hz to a 32-d unit embedding.

    Input: ``audio`` (batch, n_samples) float32, any n_samples (see below).
    Output: ``embedding`` (batch, embedding_dim) float32, unit L2 norm.

    MECOMP's call has no lengths, so trailing digital silence (exact zeros) is
    taken as padding: the frames after a row's last non-zero sample are set to
    silence (the front end's floor) and the windows that reach them are masked
    out of the head (:meth:`LogMelFrontend.valid_frames`). A song therefore gets
    the same embedding alone and zero-padded in a batch, and a song that ends in
    digital silence is embedded without it. Input shorter than one model window
    is padded with silent frames; an all-zero row is one silent window. Input
    shorter than one STFT window, silence, and NaN or Inf samples follow
    :class:`LogMelFrontend`.
    """

    def __init__(self, frontend: LogMelFrontend, embedder: SongEmbedder) -> None:
        super().__init__()
        self.frontend = frontend
        self.embedder = embedder

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio, n_samples = self.frontend.extend(audio)
        frames = self.frontend.log_mel(audio, n_samples)  # (batch, n_frames, n_mels)
        valid = self.frontend.valid_frames(audio, n_samples)  # (batch,)
        floor = self.frontend.floor_db
        n_frames = frames.shape[1]
        if not isinstance(n_frames, torch.Tensor):
            n_frames = torch.tensor(n_frames)
        frames = torch.where(torch.arange(n_frames)[None, :, None] < valid[:, None, None], frames,
                             torch.full_like(frames, floor))
        silent = torch.full_like(frames[:, :1], floor).expand(-1, self.embedder.window_frames, -1)
        frames = torch.cat([frames, silent], dim=1)[:, : torch.clamp(n_frames, min=self.embedder.window_frames)]
        return self.embedder(frames, valid)


def build_embedder(config: dict[str, Any] | DictConfig, features: FeatureConfig) -> SongEmbedder:
    """Build a :class:`SongEmbedder` from the ``window``, ``model`` and ``head`` config groups.

    Args:
        config: mapping with ``window`` (``window_seconds``, ``hop_seconds``),
            ``model`` (``encoder_channels``, ``embedding_dim``) and ``head``
            (a Hydra ``_target_`` with its parameters; ``in_dim`` is filled in).
        features: the feature store's parameters (frame rate, n_mels).

    Raises:
        ValueError: the window is shorter than 3 frames or the hop is not in (0, window].
    """
    config = OmegaConf.create(OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config)
    window_frames = features.seconds_to_frames(config.window.window_seconds)
    hop_frames = features.seconds_to_frames(config.window.hop_seconds)
    if window_frames < 3:
        raise ValueError(f"window of {config.window.window_seconds} s is under 3 frames")
    encoder = WindowEncoder(config.model.encoder_channels)
    head_params = {k: v for k, v in config.head.items() if k != "name"}
    head = instantiate(head_params, in_dim=encoder.out_dim)
    return SongEmbedder(features.n_mels, window_frames, hop_frames, encoder, head, config.model.embedding_dim)


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the Hydra config a checkpoint needs to rebuild its model."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("window", "model", "head")}


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_checkpoint(path: str | Path) -> tuple[SongEmbedder, dict[str, Any]]:
    """Load a checkpoint written by :func:`songfeel.train.train_variant`, in eval mode.

    Returns:
        the model and the checkpoint's metadata (``config``, ``features``, ``variant`` ...).

    Raises:
        FileNotFoundError: the checkpoint does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    features = FeatureConfig.from_mapping(checkpoint["features"])
    model = build_embedder(checkpoint["config"], features)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model, meta
