"""The log-mel front end in torch ops, so that it can live inside the ONNX graph.

Both front ends reproduce :func:`songfeel.features.log_mel` (librosa,
``center=False``, periodic Hann window, power spectrum, Slaney mel filterbank,
dB with a floor) with ops that ONNX Runtime, tract and burn all import, unlike
the ONNX STFT and DFT ops:

- :class:`LogMelFrontend`, the exported one: frames are consecutive hops
  concatenated (Reshape, Slice, Concat) and the real DFT is factorised as
  ``n_fft = N1 x N2`` (Cooley & Tukey 1965), so its constants are a few tens of kB
  and the exported model stays far under MECOMP's 1 MB.
- :class:`ConvLogMelFrontend`, the reference: a strided Conv1d with the full
  Fourier basis, (n_fft + 2) x n_fft floats (4.2 MB for n_fft = 1024).
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from torch import nn

from songfeel.features import FeatureConfig, mel_filterbank


def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, float64, shape (n_fft,)."""
    return scipy.signal.get_window("hann", n_fft, fftbins=True)


def dft_factors(n_fft: int, hop_length: int) -> tuple[int, int]:
    """The factorisation ``n_fft = n1 * n2`` used by :class:`LogMelFrontend`.

    ``n2`` divides ``hop_length``, so that every hop is whole rows of the
    (n1, n2) view of a frame; among such divisors, the one that makes the
    constant matrices smallest (``n1`` and ``n2`` closest to sqrt(n_fft)).

    Raises:
        ValueError: ``n_fft`` is not a whole multiple of ``hop_length``.
    """
    if hop_length <= 0 or n_fft % hop_length:
        raise ValueError(f"n_fft ({n_fft}) must be a whole multiple of hop_length ({hop_length}) "
                         "for the in-graph front end")
    divisors = [d for d in range(1, hop_length + 1) if hop_length % d == 0]
    n2 = min(divisors, key=lambda d: (d + n_fft // d, -d))
    return n_fft // n2, n2


class LogMelFrontend(nn.Module):
    """Raw audio to log-mel frames, with a compact factorised DFT.

    Input: ``audio`` (batch, n_samples), mono float32 at ``cfg.sample_rate``,
    with n_samples >= cfg.n_fft.
    Output: (batch, n_frames, n_mels) in dB, ``n_frames = 1 + (n_samples - n_fft) // hop_length``;
    trailing samples that do not fill a hop are ignored, as with ``center=False``.

    Frames: the first ``n_chunks = n_samples // hop_length`` hops are reshaped to
    (batch, n_chunks, hop_length) and frame i is hops i .. i + n_fft / hop_length - 1
    concatenated (Reshape, Slice, Concat: no Conv, no Gather over samples), times the window.

    Spectrum: the Cooley-Tukey decomposition of the N-point DFT, N = n_fft = N1 N2
    (J. W. Cooley and J. W. Tukey, "An algorithm for the machine calculation of
    complex Fourier series", Math. Comp. 19(90), 1965), with sample
    ``n = N2 n1 + n2`` and bin ``k = k1 + N1 k2``::

        X[k1 + N1 k2] = sum_n2 W_N2^(n2 k2) W_N^(n2 k1) sum_n1 W_N1^(n1 k1) x[N2 n1 + n2],

    ``W_M = exp(-2 pi i / M)``: an N1-point DFT of the real frame (a MatMul), the
    N2 x N1 twiddle factors (Mul), an N2-point complex DFT (a MatMul) that keeps
    only the k2 of bins 0 .. n_fft / 2, then the power and the mel MatMul. For
    n_fft = 1024, N1 = N2 = 32 (:func:`dft_factors`) and the constants are the
    window (4 kB), the two DFT bases (32 x 64 and 64 x 34: 8 kB and 8.7 kB), the
    twiddles (2 x 32 x 32: 8 kB) and the mel basis with its rows in the DFT's bin
    order and zero rows for bins 513 .. 543 (544 x 64: 139 kB), against 4.2 MB for
    the direct DFT of :class:`ConvLogMelFrontend`; about 6x fewer multiply-adds too.

    Raises:
        ValueError: in ``__init__``, ``cfg.n_fft`` is not a whole multiple of
            ``cfg.hop_length``; in ``forward``, the input is shorter than ``cfg.n_fft``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_fft, hop = cfg.n_fft, cfg.hop_length
        n1, n2 = dft_factors(n_fft, hop)
        self.hops_per_frame = n_fft // hop
        self.n1, self.n2 = n1, n2
        # Bins 0 .. n_fft // 2 are k1 + n1 * k2 with k2 < n_k2.
        self.n_k2 = min(n2, (n_fft // 2) // n1 + 1)

        # Window in the (n2, n1) layout the frames are built in: window_t[b, a] = w[n2 * a + b].
        window = _hann(n_fft).reshape(n1, n2).T
        k1 = np.arange(n1)
        inner = 2 * np.pi * np.outer(k1, k1) / n1  # (n1, k1)
        inner_basis = np.concatenate([np.cos(inner), -np.sin(inner)], axis=1)  # (n1, 2 * n1): re | im
        twiddle = 2 * np.pi * np.outer(np.arange(n2), k1) / n_fft  # (n2, k1)
        outer = 2 * np.pi * np.outer(np.arange(n2), np.arange(self.n_k2)) / n2  # (n2, k2)
        cos, sin = np.cos(outer), np.sin(outer)
        outer_basis = np.block([[cos, -sin], [sin, cos]])  # (re | im of n2) x (re | im of k2)
        # Mel basis rows in the order of the flattened (k1, k2) power; bins above n_fft / 2 get zero rows.
        mel = mel_filterbank(cfg).T  # (1 + n_fft // 2, n_mels)
        bins = (k1[:, None] + n1 * np.arange(self.n_k2)[None, :]).reshape(-1)
        mel_rows = np.zeros((bins.size, cfg.n_mels), dtype=np.float32)
        kept = bins <= n_fft // 2
        mel_rows[kept] = mel[bins[kept]]

        def constant(name: str, array: np.ndarray) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))

        constant("window", window)
        constant("inner_basis", inner_basis)
        constant("twiddle_cos", np.cos(twiddle))
        constant("twiddle_sin", np.sin(twiddle))
        constant("outer_basis", outer_basis)
        constant("mel_basis", mel_rows)
        self.log_floor = float(cfg.amin)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Windowed frames in the transposed (n2, n1) layout: (batch, n_frames, n2, n1)."""
        hop, m = self.cfg.hop_length, self.hops_per_frame
        n_chunks = audio.shape[1] // hop
        chunks = audio[:, : n_chunks * hop].reshape(audio.shape[0], n_chunks, hop // self.n2, self.n2)
        chunks = chunks.transpose(2, 3)  # (batch, n_chunks, n2, n1 / m)
        # Frame i is chunks i .. i + m - 1; n_frames = n_chunks - m + 1.
        parts = [chunks[:, i : i - m + 1] if i < m - 1 else chunks[:, i:] for i in range(m)]
        return torch.cat(parts, dim=3) * self.window

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and audio.shape[-1] < self.cfg.n_fft:
            raise ValueError(f"{audio.shape[-1]} samples is shorter than one STFT window ({self.cfg.n_fft})")
        n1 = self.n1
        inner = torch.matmul(self.frames(audio), self.inner_basis)  # (batch, n_frames, n2, re | im of k1)
        real, imag = inner[..., :n1], inner[..., n1:]
        twiddled_real = real * self.twiddle_cos + imag * self.twiddle_sin
        twiddled_imag = imag * self.twiddle_cos - real * self.twiddle_sin
        twiddled = torch.cat([twiddled_real, twiddled_imag], dim=2).transpose(2, 3)  # (..., k1, re | im of n2)
        spectrum = torch.matmul(twiddled, self.outer_basis)  # (batch, n_frames, k1, re | im of k2)
        real, imag = spectrum[..., : self.n_k2], spectrum[..., self.n_k2 :]
        power = (real * real + imag * imag).flatten(2)  # (batch, n_frames, k1 * n_k2 + k2)
        mel = torch.matmul(power, self.mel_basis)
        return 10.0 * torch.log10(torch.clamp(mel, min=self.log_floor))


class ConvLogMelFrontend(nn.Module):
    """Raw audio to log-mel frames with a direct DFT: the reference for :class:`LogMelFrontend`.

    The STFT is a strided Conv1d with the windowed Fourier basis, shape
    (2 * (n_fft // 2 + 1), 1, n_fft) (4.2 MB of fp32 for n_fft = 1024), so its
    ONNX export is about 4.5 MB; any n_fft and hop_length.

    Input: ``audio`` (batch, n_samples), mono float32 at ``cfg.sample_rate``,
    with n_samples >= cfg.n_fft (shorter input raises torch's RuntimeError).
    Output: (batch, n_frames, n_mels) in dB, ``n_frames = 1 + (n_samples - n_fft) // hop_length``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_bins = cfg.n_fft // 2 + 1
        window = _hann(cfg.n_fft)
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
