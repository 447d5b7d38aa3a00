"""The log-mel front end in torch ops, so that it can live inside the ONNX graph.

It reproduces :func:`songfeel.features.log_mel` (librosa, ``center=False``,
periodic Hann window, power spectrum, Slaney mel filterbank, dB with a floor):
the STFT is a strided Conv1d with a fixed Fourier basis, which ONNX Runtime,
tract and burn all import, unlike the ONNX STFT op with non-constant parameters.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from torch import nn

from songfeel.features import FeatureConfig, mel_filterbank


class LogMelFrontend(nn.Module):
    """Raw audio to log-mel frames.

    Input: ``audio`` (batch, n_samples), mono float32 at ``cfg.sample_rate``,
    with n_samples >= cfg.n_fft.
    Output: (batch, n_frames, n_mels) in dB, ``n_frames = 1 + (n_samples - n_fft) // hop_length``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_bins = cfg.n_fft // 2 + 1
        window = scipy.signal.get_window("hann", cfg.n_fft, fftbins=True)
        phase = 2 * np.pi * np.outer(np.arange(n_bins), np.arange(cfg.n_fft)) / cfg.n_fft
        basis = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])  # (2 * n_bins, n_fft)
        self.register_buffer("fourier_basis", torch.from_numpy(basis.astype(np.float32))[:, None, :])
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(cfg).T.copy()))  # (n_bins, n_mels)
        self.n_bins = n_bins
        self.log_floor = float(cfg.amin)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spectrum = nn.functional.conv1d(audio[:, None, :], self.fourier_basis, stride=self.cfg.hop_length)
        real, imag = spectrum[:, : self.n_bins], spectrum[:, self.n_bins :]
        power = (real * real + imag * imag).transpose(1, 2)  # (batch, n_frames, n_bins)
        mel = torch.matmul(power, self.mel_basis)
        return 10.0 * torch.log10(torch.clamp(mel, min=self.log_floor))
