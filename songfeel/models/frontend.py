"""The log-mel front end in torch ops, so that it can live inside the ONNX graph.

Both front ends reproduce :func:`songfeel.features.log_mel` (librosa,
``center=False``, periodic Hann window, power spectrum, Slaney mel filterbank,
dB with a floor) with ops that ONNX Runtime, tract and burn all import, unlike
the ONNX STFT and DFT ops:

- :class:`LogMelFrontend`, the exported one: the real DFT is factorised as
  ``n_fft = N1 x N2`` (Cooley & Tukey 1965) into a grouped Conv1d over the signal
  and one MatMul, using the real input's symmetry, so its constants are 434 kB
  (the exported model stays under MECOMP's 1 MB) and it does a seventh of the
  direct DFT's multiply-adds.
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
    """Raw audio to log-mel frames, with a factorised DFT in two matrix products.

    Input: ``audio`` (batch, n_samples), mono float32 at ``cfg.sample_rate``.
    Output: (batch, n_frames, n_mels) in dB,
    ``n_frames = 1 + (max(n_samples, n_fft) - n_fft) // hop_length``; trailing samples
    that do not fill a hop are ignored, as with ``center=False``.

    Defined behaviour for input that is not a normal song:

    - shorter than one STFT window (``n_fft`` samples, 46 ms at 22050 Hz, including
      empty input): zero-padded to ``n_fft``, so it gives one frame;
    - silence: every band is the floor, ``10 log10(amin)`` (-100 dB);
    - NaN or +-Inf samples, or samples so large that the power overflows: the
      frames that contain them are set to the floor, as if silent; the rest of the
      song is untouched.

    Spectrum: the Cooley-Tukey decomposition of the N-point DFT, N = n_fft = N1 N2
    (J. W. Cooley and J. W. Tukey, "An algorithm for the machine calculation of
    complex Fourier series", Math. Comp. 19(90), 1965), with sample
    ``n = N2 n1 + n2`` and bin ``k = k1 + N1 k2``::

        X[k1 + N1 k2] = sum_n2 W_N2^(n2 k2) [W_N^(n2 k1) sum_n1 W_N1^(n1 k1) w[N2 n1 + n2] x[N2 n1 + n2]],

    ``W_M = exp(-2 pi i / M)`` and ``w`` the periodic Hann window.

    1. The samples are viewed as rows of N2 (Reshape, Transpose: channel n2 holds
       every N2-th sample). The bracket is, for each n2, an N1-tap filter with
       stride ``hop_length / N2`` rows, window and twiddle factors folded in. The
       signal is real, so ``X[N - k] = conj(X[k])`` and only k1 = 0 .. N1 / 2 is
       needed: ``k1 + N1 k2`` above n_fft / 2 stands for its mirror bin
       ``(N1 - k1) + N1 (N2 - 1 - k2)``. So 2 (N1 / 2 + 1) outputs per n2 (real
       and imaginary part): one grouped Conv1d (groups = N2), and frames are
       never copied out of the signal.
    2. The outer sum is a complex N2-point DFT over every k2: one MatMul with a
       (2 N2, 2 N2) real matrix.
    3. The squared spectrum (Mul) and the mel MatMul, whose columns follow the
       (part, k2, k1) order (the power's sum over the real and imaginary part is
       folded in; a bin computed twice gets weight once), the floor and the dB.

    For n_fft = 1024 and hop 512, N1 = N2 = 32 (:func:`dft_factors`); the
    constants are the filters (32 x 34 x 32: 139 kB), the outer DFT (64 x 64:
    16 kB) and the mel basis (64 x 1088: 278 kB), against 4.2 MB for the direct
    DFT of :class:`ConvLogMelFrontend`, and the multiply-adds per frame are 144 k
    (35 k, 70 k and 70 k) instead of 1.05 M. Every op is plain ONNX (no STFT or DFT
    op), for ONNX Runtime, tract and burn.

    Raises:
        ValueError: in ``__init__``, ``cfg.n_fft`` is not a whole multiple of ``cfg.hop_length``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_fft, hop = cfg.n_fft, cfg.hop_length
        n1, n2 = dft_factors(n_fft, hop)
        self.n1, self.n2 = n1, n2
        self.stride = hop // n2  # rows of n2 samples per hop
        # The signal is real, so X[N - k] = conj(X[k]): the k1 <= n1 / 2 half of the inner DFT gives every bin.
        self.n_k1 = n1 // 2 + 1

        rows, cols = np.arange(n1), np.arange(n2)  # n1 indexes rows of n2 samples; n2 (and k2) columns
        k1s = np.arange(self.n_k1)
        window = _hann(n_fft).reshape(n1, n2)  # window[n1, n2] = w[n2_count * n1 + n2]
        # Inner filters, out channel (n2, part, k1), tap n1: w * W_N1^(n1 k1) * W_N^(n2 k1).
        theta = 2 * np.pi * (cols[:, None, None] * k1s[None, None, :] / n_fft
                             + rows[None, :, None] * k1s[None, None, :] / n1)  # (n2, n1, k1)
        windowed = window.T[:, :, None]  # (n2, n1, 1)
        inner = np.stack([windowed * np.cos(theta), -windowed * np.sin(theta)], axis=1)  # (n2, part, n1, k1)
        inner = inner.transpose(0, 1, 3, 2).reshape(n2 * 2 * self.n_k1, 1, n1)
        # Outer DFT over every k2: rows (part, k2), columns (n2, part) as the inner filters' channels come out.
        phi = 2 * np.pi * np.outer(cols, cols) / n2  # (k2, n2)
        cos, sin = np.cos(phi), np.sin(phi)
        outer = np.stack([np.stack([cos, sin], axis=-1), np.stack([-sin, cos], axis=-1)])  # (part, k2, n2, part')
        outer = outer.reshape(2 * n2, 2 * n2)
        # Mel basis over the squared spectrum, columns (part, k2, k1): the power's sum over the real and
        # imaginary part is folded into the MatMul. Bin k = k1 + n1 k2 stands for min(k, N - k); a bin
        # above n_fft / 2 whose mirror N - k is computed too (k1 = 0 or k1 = n1 / 2) gets zero weight.
        mel = mel_filterbank(cfg)  # (n_mels, 1 + n_fft // 2)
        k1_grid, k2_grid = np.meshgrid(k1s, cols, indexing="xy")  # (k2, k1)
        bins = (k1_grid + n1 * k2_grid).reshape(-1)
        mirrored = n_fft - bins
        twin_computed = ((k1_grid == 0) | (2 * k1_grid == n1)).reshape(-1)
        kept = (bins <= n_fft // 2) | ~twin_computed
        stands_for = np.where(bins <= n_fft // 2, bins, mirrored)
        counts = np.bincount(stands_for[kept], minlength=n_fft // 2 + 1)
        assert counts.size == n_fft // 2 + 1 and (counts == 1).all(), "every bin 0 .. n_fft / 2 exactly once"
        mel_columns = np.zeros((cfg.n_mels, bins.size), dtype=np.float32)
        mel_columns[:, kept] = mel[:, stands_for[kept]]
        # (n_mels, 2 * n2 * n_k1): the same columns for the real and the imaginary part, so that the power's sum
        # over the parts is folded into the MatMul (a separate sum costs more than the MatMul's extra half)
        mel_columns = np.concatenate([mel_columns, mel_columns], axis=1)

        def constant(name: str, array: np.ndarray) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))

        constant("inner_filters", inner)
        constant("outer_basis", outer)
        constant("mel_basis", mel_columns)
        self.log_floor = float(cfg.amin)

    @property
    def floor_db(self) -> float:
        """The log-mel of silence, ``10 log10(amin)`` dB."""
        return float(10.0 * np.log10(self.log_floor))

    def extend(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append zeros up to a whole number of hops, with at least ``n_fft + hop_length`` of them.

        The extended audio can then be viewed as rows and hops with a Reshape alone (no Slice,
        which would copy the song) and every slice below is non-empty.

        Returns:
            the extended audio (batch, hop_length * (ceil(n_samples / hop_length) + n_fft / hop_length + 1))
            and the length it stands for, ``max(n_samples, n_fft)`` (0-d int64): input shorter
            than one STFT window is zero-padded to one. A Concat (not a Pad by a computed
            amount, nor an empty slice, which tract cannot import).
        """
        n_samples = audio.shape[1]
        if not isinstance(n_samples, torch.Tensor):
            n_samples = torch.tensor(n_samples)
        hop = self.cfg.hop_length
        hops = torch.div(n_samples + (hop - 1), hop, rounding_mode="trunc") + self.cfg.n_fft // hop + 1
        zeros = torch.zeros(audio.shape[0], hops * hop - n_samples, dtype=audio.dtype)
        return torch.cat([audio, zeros], dim=1), torch.clamp(n_samples, min=self.cfg.n_fft)

    def valid_frames(self, audio: torch.Tensor, n_samples: torch.Tensor) -> torch.Tensor:
        """Frames before the trailing digital silence (exact zeros) of each row: (batch,) int64, at least 1.

        The count is that of the row cut after its last non-zero sample, so a song gives the
        same count alone and zero-padded in a batch: ``1 + (max(L, n_fft) - n_fft) // hop``
        with ``L`` the index of the last non-zero sample + 1, or 1 for an all-zero row. It
        only needs one pass over the audio: with ``n_fft`` a whole multiple ``m`` of the hop,
        the count is ``max(h, m) - m + 1`` for ``h = L // hop``, the whole hops before the end
        of the signal, found from the hops' L1 norms and the last sample of the last
        non-zero hop.

        Args:
            audio, n_samples: the output of :meth:`extend` (whole hops, ending in zeros).
        """
        hop, m = self.cfg.hop_length, self.cfg.n_fft // self.cfg.hop_length
        hops = audio.reshape(audio.shape[0], -1, hop)  # (batch, n_hops, hop)
        # != 0 rather than > 0: a hop with NaN sounds (its frames are silenced, but it is not padding)
        sounding = (torch.linalg.vector_norm(hops, ord=1, dim=2) != 0).to(torch.int64)  # (batch, n_hops)
        # 1 + the index of the last sounding hop, 0 when none (a max over indices: no Flip, for tract)
        after_last = torch.amax(sounding * torch.arange(1, hops.shape[1] + 1), dim=1)
        last = torch.clamp(after_last - 1, min=0)
        # the last sounding hop is whole when its last sample is not zero (the extension's zeros end a part hop)
        ends_on_sound = torch.gather(hops[:, :, hop - 1], 1, last[:, None])[:, 0] != 0
        whole = torch.where(after_last > 0, last + ends_on_sound.to(torch.int64), torch.zeros_like(last))
        return torch.clamp(whole, min=m) - m + 1

    def log_mel(self, audio: torch.Tensor, n_samples: torch.Tensor) -> torch.Tensor:
        """The log-mel of the first ``n_samples`` of ``audio`` (the output of :meth:`extend`).

        Returns:
            (batch, n_frames, n_mels) in dB, ``n_frames = 1 + (n_samples - n_fft) // hop_length``.
        """
        n2 = self.n2
        batch = audio.shape[0]
        rows = audio.reshape(batch, -1, n2).transpose(1, 2)  # (batch, n2, n_rows): whole hops, so no Slice
        inner = nn.functional.conv1d(rows, self.inner_filters, stride=self.stride, groups=n2)  # (batch, n2 * 2 * k1, F')
        spectrum = torch.matmul(self.outer_basis, inner.reshape(batch, 2 * n2, -1))  # (batch, 2 * k2, k1 * F')
        squared = (spectrum * spectrum).reshape(batch, 2 * n2 * self.n_k1, inner.shape[2])
        mel = torch.matmul(self.mel_basis, squared)  # (batch, n_mels, F'): with the sum over the parts
        # The frames of the signal; the extension's zeros add a few more (F' > n_frames).
        n_frames = torch.div(n_samples - self.cfg.n_fft, self.cfg.hop_length, rounding_mode="trunc") + 1
        mel = mel[:, :, :n_frames]
        # NaN or Inf samples (or an overflow) leave NaN or +Inf in their frames (the power is never -Inf): those
        # frames become the floor. One Less (False for NaN and +Inf) rather than IsNaN | IsInf, which tract rejects.
        mel = torch.where(mel < float("inf"), mel, torch.zeros_like(mel))
        return (10.0 * torch.log10(torch.clamp(mel, min=self.log_floor))).transpose(1, 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.log_mel(*self.extend(audio))


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
