"""Streaming song embedding: embed a song while it is being decoded.

MECOMP's whole-song call, ``AudioEmbedder(audio[None])``, needs every sample of
the song in memory before it starts. :class:`StreamingEmbedder` gives the same
embedding (within float32 rounding; the tests hold it to 1e-4) from chunks of
samples of any length, handed over in decode order::

    stream = StreamingEmbedder(build_audio_model("model.pt"))
    for chunk in decoder:            # mono float32 at 22050 Hz, any chunk length
        stream.push(chunk)
    embedding = stream.finish()      # (embedding_dim,) float32, unit L2 norm
    stream.reset()                   # ready for the next song

Each :meth:`StreamingEmbedder.push` runs the model as far as the samples allow,
in the order of the whole-song call:

1. **Front end.** Frame ``f`` starts at sample ``f * hop_length`` and needs
   ``n_fft`` samples (``center=False``), so every frame depends on its own
   samples only. The stream keeps the samples from the first frame it has not
   computed yet (fewer than ``n_fft``), appends the chunk, and calls the model's
   own front end on the slice that yields exactly the new frames.
2. **Input norm.** The embedder's BatchNorm1d, in eval mode a per-band affine,
   is applied to the new frames.
3. **Window encoder.** Window ``w`` covers frames ``w * hop_frames`` to
   ``w * hop_frames + window_frames - 1`` (chunked: hop = window; sliding:
   hop < window). The stream keeps the frames from the first window not yet
   encoded (fewer than ``window_frames``) and runs the CNN on every newly
   completed window, all of them in one batch.
4. **Sequence head.** Each window's feature goes to the head's state:

   - :class:`~songfeel.models.heads.GRUHead`: the GRU hidden state, and an
     online softmax attention pool (running maximum of the scores per pooling
     head, running sum of ``exp(score - max)`` and running weighted sum of the
     GRU outputs, both rescaled when the maximum grows; Milakov & Gimelshein
     2018, arXiv 1805.02867). The state has a constant size, so memory stays
     bounded however long the song.
   - :class:`~songfeel.models.heads.AttentionHead`: its self-attention spans the
     whole song and is not causal, so the state is the list of window features
     so far (64 floats per window, about 90 kB for a 3 min song with sliding
     windows) and the head runs at :meth:`~StreamingEmbedder.finish`.

Trailing digital silence. The whole-song call takes the exact zeros at the end
of a song as padding (:meth:`LogMelFrontend.valid_frames`): only the windows
that end before them are pooled. A stream cannot know whether zeros are the end
of the song or a pause, so the windows computed over a run of zeros are kept
*pending*: the GRU runs over them (its outputs at later windows need them), but
their share of the attention pool goes to a second online accumulator, merged
into the first as soon as a non-zero sample arrives and dropped at
:meth:`~StreamingEmbedder.finish`. A run of zeros of any length therefore costs
no memory either.

:meth:`StreamingEmbedder.finish` reproduces the whole-song call's edge cases: a
song shorter than one STFT window (``n_fft`` samples, including an empty one) is
zero-padded to one frame; a song whose sound (before any trailing digital
silence) is shorter than one model window gives one window of its frames padded
with silent frames (the front end's floor); trailing samples that do not fill a
hop and trailing frames that do not fill a window hop are ignored.

Pipelining: ``push`` returns once the chunk's windows are encoded and handed to
the head, and torch releases the GIL inside its kernels, so a caller can decode
the next chunk in one thread (the producer) while another thread (the consumer,
the only one that touches the stream) pushes the current one, through a
``queue.Queue``. The stream itself starts no threads and is not thread-safe.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from songfeel.models.embedder import AudioEmbedder
from songfeel.models.heads import AttentionHead, GRUHead

log = logging.getLogger(__name__)

#: Most frames computed by one front-end call: a long chunk (a whole song pushed
#: at once) is processed in pieces of this many frames (~47 s at 22050 Hz and
#: hop 512), so the transient memory is bounded too.
MAX_BLOCK_FRAMES = 2048


class _OnlinePool:
    """Online softmax-weighted sum over time, as :func:`songfeel.models.heads.masked_attention_pool`.

    Holds, per pooling head, the running maximum score, the running sum of
    ``exp(score - max)`` and the running sum of ``exp(score - max) * value``, in
    float64; constant size whatever the number of steps.
    """

    def __init__(self) -> None:
        self.max_score: torch.Tensor | None = None  # (heads,)
        self.weight_sum: torch.Tensor | None = None  # (heads,)
        self.value_sum: torch.Tensor | None = None  # (heads, dim // heads)

    @property
    def empty(self) -> bool:
        return self.max_score is None

    def _rescaled(self, new_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = torch.exp(self.max_score - new_max)  # <= 1: older weights shrink when the maximum grows
        return self.weight_sum * scale, self.value_sum * scale[:, None]

    def add(self, scores: torch.Tensor, values: torch.Tensor) -> None:
        """Add steps: ``scores`` (n, heads) logits, ``values`` (n, dim) with dim divisible by heads."""
        if scores.shape[0] == 0:
            return
        scores = scores.double()
        values = values.double().reshape(scores.shape[0], scores.shape[1], -1)  # (n, heads, dim // heads)
        chunk_max = scores.max(dim=0).values
        if self.empty:
            new_max, weight_sum, value_sum = chunk_max, torch.zeros_like(chunk_max), torch.zeros_like(values[0])
        else:
            new_max = torch.maximum(self.max_score, chunk_max)
            weight_sum, value_sum = self._rescaled(new_max)
        weights = torch.exp(scores - new_max)  # (n, heads), each <= 1
        self.max_score = new_max
        self.weight_sum = weight_sum + weights.sum(dim=0)
        self.value_sum = value_sum + (weights[:, :, None] * values).sum(dim=0)

    def merge(self, other: _OnlinePool) -> None:
        """Add every step of ``other`` (the pool is a sum, so the order does not matter)."""
        if other.empty:
            return
        if self.empty:
            self.max_score, self.weight_sum, self.value_sum = other.max_score, other.weight_sum, other.value_sum
            return
        new_max = torch.maximum(self.max_score, other.max_score)
        mine, theirs = self._rescaled(new_max), other._rescaled(new_max)
        self.max_score, self.weight_sum, self.value_sum = new_max, mine[0] + theirs[0], mine[1] + theirs[1]

    def result(self) -> torch.Tensor:
        """The pooled vector, (dim,) float32."""
        return (self.value_sum / self.weight_sum[:, None]).reshape(-1).float()


class _GRUState:
    """Constant-size state of a :class:`GRUHead`: the GRU hidden state, and online pools of the
    confirmed windows (before the last non-zero sample) and of the pending ones (over trailing zeros)."""

    def __init__(self, head: GRUHead, device: torch.device) -> None:
        self.head = head
        self.hidden = torch.zeros(head.gru.num_layers, 1, head.gru.hidden_size, device=device)
        self.confirmed, self.pending = _OnlinePool(), _OnlinePool()
        self.n_seen = 0  # windows run through the GRU
        self.n_confirmed = 0  # windows in self.confirmed; the others (n_seen - n_confirmed) are pending

    def _confirm(self, n_valid: int) -> None:
        if n_valid > self.n_confirmed and self.n_seen > self.n_confirmed:
            # A non-zero sample after every pending window confirms them all (StreamingEmbedder._n_valid_windows).
            if n_valid < self.n_seen:
                raise AssertionError(f"{n_valid} valid windows split the pending ones "
                                     f"({self.n_confirmed}..{self.n_seen})")
            self.confirmed.merge(self.pending)
            self.pending = _OnlinePool()
        self.n_confirmed = max(self.n_confirmed, min(n_valid, self.n_seen))

    def consume(self, features: torch.Tensor, n_valid: int) -> None:
        """Feed the next windows' features (n, in_dim); the first ``n_valid`` windows of the song are confirmed."""
        self._confirm(n_valid)
        outputs, self.hidden = self.head.gru(features[None], self.hidden)
        outputs = outputs[0]  # (n, hidden)
        scores = self.head.score(outputs)  # (n, heads)
        n_new_valid = min(max(n_valid - self.n_seen, 0), outputs.shape[0])
        self.confirmed.add(scores[:n_new_valid], outputs[:n_new_valid])
        self.pending.add(scores[n_new_valid:], outputs[n_new_valid:])
        self.n_seen += outputs.shape[0]
        self.n_confirmed += n_new_valid

    def pooled(self, n_valid: int) -> torch.Tensor:
        """The head's output over the first ``n_valid`` windows, (out_dim,)."""
        self._confirm(n_valid)
        if self.n_confirmed != n_valid:
            raise AssertionError(f"{n_valid} valid windows, {self.n_confirmed} pooled")
        return self.confirmed.result()

    @property
    def n_buffered(self) -> int:
        return 0


class _BufferedState:
    """State of a head that needs every window at once (:class:`AttentionHead`): the window features so far."""

    def __init__(self, head: nn.Module) -> None:
        self.head = head
        self.features: list[torch.Tensor] = []

    def consume(self, features: torch.Tensor, n_valid: int) -> None:
        self.features.append(features)

    def pooled(self, n_valid: int) -> torch.Tensor:
        features = torch.cat(self.features)[None, :n_valid]  # (1, n_valid, in_dim)
        mask = torch.ones(1, features.shape[1], dtype=torch.bool, device=features.device)
        return self.head(features, mask)[0]

    @property
    def n_buffered(self) -> int:
        return sum(f.shape[0] for f in self.features)


class StreamingEmbedder:
    """Embed one song at a time from chunks of samples, with the weights of an :class:`AudioEmbedder`.

    The result equals ``model(whole_song[None])[0]`` within float32 rounding.
    The model is put in eval mode (its BatchNorm layers must use their running
    statistics, so that frames and windows are independent), and everything
    runs under ``torch.no_grad()``, on the device of the model's parameters.

    Memory: for a GRU head, the stream keeps fewer than ``n_fft`` samples, fewer
    than ``window_frames`` frames (twice that while the first window is pending
    over digital silence) and a constant-size head state, whatever the song's
    length; for an attention head it also keeps one feature vector per window
    (see the module docstring).

    Args:
        model: the front end and embedder, e.g. from :func:`songfeel.export.onnx.build_audio_model`.

    Raises:
        TypeError: ``model.embedder.head`` is neither a :class:`GRUHead` nor an :class:`AttentionHead`.
    """

    def __init__(self, model: AudioEmbedder) -> None:
        head = model.embedder.head
        if not isinstance(head, (GRUHead, AttentionHead)):
            raise TypeError(f"cannot stream a {type(head).__name__} head: only GRUHead (online) and "
                            "AttentionHead (buffered window features) are supported")
        self.model = model.eval()
        cfg = model.frontend.cfg
        self.n_fft, self.hop_length = cfg.n_fft, cfg.hop_length
        self.hops_per_frame = cfg.n_fft // cfg.hop_length  # LogMelFrontend requires a whole multiple
        self.window_frames = model.embedder.window_frames
        self.hop_frames = model.embedder.hop_frames
        self.device = next(model.parameters()).device
        with torch.no_grad():
            floor = torch.full((1, cfg.n_mels, 1), model.frontend.floor_db, device=self.device)
            self._silent_frame = model.embedder.input_norm(floor)[0, :, 0]  # (n_mels,), normalised
        self.reset()

    def reset(self) -> None:
        """Forget the current song (finished or not) and start a new one."""
        n_mels = self.model.frontend.cfg.n_mels
        self._samples = torch.zeros(0, device=self.device)  # from sample n_frames * hop_length on
        self._frames = torch.zeros(0, n_mels, device=self.device)  # normalised, from the first window not encoded
        self._first_window: torch.Tensor | None = None  # (window_frames, n_mels) while window 0 is pending
        self._n_samples = 0
        self._n_frames = 0
        self._n_windows = 0
        self._n_hops_checked = 0  # whole hops scanned for sound
        self._sound_end = 0  # ``whole`` of LogMelFrontend.valid_frames over the whole hops scanned
        self._embedding: np.ndarray | None = None
        self._head = self._new_head_state()

    def _new_head_state(self) -> _GRUState | _BufferedState:
        head = self.model.embedder.head
        return _GRUState(head, self.device) if isinstance(head, GRUHead) else _BufferedState(head)

    @property
    def n_samples_seen(self) -> int:
        """Samples pushed since the last reset (at the model's sample rate, 22050 per second)."""
        return self._n_samples

    @property
    def n_frames(self) -> int:
        """Log-mel frames computed so far."""
        return self._n_frames

    @property
    def n_windows(self) -> int:
        """Windows encoded so far; after :meth:`finish`, the windows that the embedding pooled (at least 1)."""
        return self._n_windows

    @property
    def n_buffered_samples(self) -> int:
        """Samples kept for frames not computed yet; always fewer than ``n_fft``."""
        return int(self._samples.shape[0])

    @property
    def n_buffered_frames(self) -> int:
        """Normalised frames kept: those of windows not encoded yet (fewer than ``window_frames``), plus the
        first window's while it is pending over digital silence."""
        first = 0 if self._first_window is None else self._first_window.shape[0]
        return int(self._frames.shape[0]) + first

    @property
    def n_buffered_features(self) -> int:
        """Window features kept by the head's state: 0 for a GRU head, ``n_windows`` for an attention head."""
        return self._head.n_buffered

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` was called since the last reset."""
        return self._embedding is not None

    def push(self, samples: np.ndarray | torch.Tensor) -> None:
        """Feed the next chunk of the song and run the model as far as it allows.

        Args:
            samples: (n,) mono floating-point samples at the model's sample rate
                (22050 Hz), in decode order, any n >= 0; converted to float32.

        Raises:
            RuntimeError: the song is finished; call :meth:`reset` first.
            ValueError: ``samples`` is not one-dimensional.
            TypeError: ``samples`` is not a floating-point array or tensor.
        """
        if self.finished:
            raise RuntimeError("push after finish(): call reset() to start a new song")
        chunk = torch.as_tensor(samples)
        if chunk.ndim != 1:
            raise ValueError(f"samples must be mono, shape (n,), not {tuple(chunk.shape)}")
        if not chunk.is_floating_point():
            raise TypeError(f"samples must be floating point (float32 in [-1, 1]), not {chunk.dtype}")
        chunk = chunk.to(device=self.device, dtype=torch.float32)
        block = MAX_BLOCK_FRAMES * self.hop_length
        with torch.no_grad():
            for start in range(0, chunk.shape[0], block):
                piece = chunk[start : start + block]
                self._samples = torch.cat([self._samples, piece])
                self._n_samples += piece.shape[0]
                self._scan_hops()
                self._advance()

    def _scan_hops(self) -> None:
        """Find the end of the sound over the new whole hops, as :meth:`LogMelFrontend.valid_frames` does:
        a hop sounds if its L1 norm is not 0 (NaN sounds), and the sound ends after the last sounding hop if that hop's
        last sample is non-zero, else at its start."""
        hop = self.hop_length
        n_whole = self._n_samples // hop
        if n_whole <= self._n_hops_checked:
            return
        offset = self._n_frames * hop  # sample index of self._samples[0]
        hops = self._samples[self._n_hops_checked * hop - offset : n_whole * hop - offset].reshape(-1, hop)
        sounding = torch.nonzero(torch.linalg.vector_norm(hops, ord=1, dim=1) != 0).flatten()
        if sounding.numel():
            last = int(sounding[-1])
            self._sound_end = self._n_hops_checked + last + int(bool(hops[last, -1] != 0))
        self._n_hops_checked = n_whole

    def _n_valid_windows(self, sound_end: int) -> int:
        """Windows that end on frames before the trailing digital silence, if the sound ended at ``sound_end``
        hops: frame ``f`` is valid when ``f + n_fft / hop <= sound_end`` (0 when no window is)."""
        last_valid_frame = sound_end - self.hops_per_frame
        if last_valid_frame < self.window_frames - 1:
            return 0
        return (last_valid_frame - self.window_frames + 1) // self.hop_frames + 1

    def _advance(self) -> None:
        """Compute every frame the buffered samples allow, then every window the buffered frames allow."""
        n_buffered = self._samples.shape[0]
        if n_buffered < self.n_fft:
            return
        n_new = 1 + (n_buffered - self.n_fft) // self.hop_length
        span = (n_new - 1) * self.hop_length + self.n_fft
        self._add_frames(self.model.frontend(self._samples[None, :span])[0])
        self._samples = self._samples[n_new * self.hop_length :].clone()  # the tail only: < n_fft samples
        self._encode_windows()

    def _add_frames(self, frames: torch.Tensor) -> None:
        """Normalise log-mel frames (n, n_mels) and append them to the frame buffer."""
        normalised = self.model.embedder.input_norm(frames.T[None])[0].T  # BatchNorm1d takes (batch, n_mels, time)
        self._frames = torch.cat([self._frames, normalised])
        self._n_frames += frames.shape[0]

    def _encode_windows(self) -> None:
        """Encode every complete window in the frame buffer and hand the features to the head."""
        n_buffered = self._frames.shape[0]
        n_valid = self._n_valid_windows(self._sound_end)
        if n_valid > 0:
            self._first_window = None
        if n_buffered < self.window_frames:
            return
        n_new = 1 + (n_buffered - self.window_frames) // self.hop_frames
        if self._n_windows == 0 and n_valid == 0:  # window 0 may end up padded with silence: keep its frames
            self._first_window = self._frames[: self.window_frames].clone()
        windows = self._frames.unfold(0, self.window_frames, self.hop_frames)[:n_new]  # (n, n_mels, window_frames)
        self._head.consume(self.model.embedder.encoder(windows.contiguous()), n_valid)
        self._n_windows += n_new
        self._frames = self._frames[n_new * self.hop_frames :].clone()  # < window_frames frames

    def finish(self) -> np.ndarray:
        """End the song and return its embedding.

        Trailing samples that do not fill a hop are ignored, and so is trailing
        digital silence. A song shorter than ``n_fft`` samples (including none)
        is zero-padded to one frame; one whose sound is shorter than one window
        gives one window, padded with silent frames, as in the whole-song call.
        Calling ``finish`` again returns the same embedding.

        Returns:
            (embedding_dim,) float32, unit L2 norm, equal to ``model(whole_song[None])[0]``
            within float32 rounding.
        """
        if self._embedding is not None:
            return self._embedding.copy()
        with torch.no_grad():
            if self._n_samples < self.n_fft:  # the front end zero-pads to one frame, whose sound ends in it
                self._add_frames(self.model.frontend(self._samples[None])[0])
                valid_frames = 1
            else:
                tail = self._samples[self._n_hops_checked * self.hop_length - self._n_frames * self.hop_length :]
                if float(torch.linalg.vector_norm(tail, ord=1)) != 0:  # sound after the last whole hop
                    self._sound_end = self._n_hops_checked
                valid_frames = max(self._sound_end, self.hops_per_frame) - self.hops_per_frame + 1
            if valid_frames >= self.window_frames:
                n_valid = self._n_valid_windows(self._sound_end)
                pooled = self._head.pooled(n_valid)
            else:  # one window: the sounding frames, then silence
                n_valid = 1
                frames = self._frames if self._first_window is None else self._first_window
                silence = self._silent_frame.expand(self.window_frames - valid_frames, -1)
                window = torch.cat([frames[:valid_frames], silence]).T[None]  # (1, n_mels, window_frames)
                self._head = self._new_head_state()
                self._head.consume(self.model.embedder.encoder(window.contiguous()), 1)
                pooled = self._head.pooled(1)
            embedding = nn.functional.normalize(self.model.embedder.projection(pooled), dim=-1)
        log.debug("streamed %d samples: %d frames (%d before trailing silence), %d of %d windows pooled",
                  self._n_samples, self._n_frames, valid_frames, n_valid, self._n_windows)
        self._n_windows = n_valid
        self._samples, self._frames, self._first_window = self._samples[:0], self._frames[:0], None
        self._embedding = embedding.cpu().numpy().astype(np.float32)
        return self._embedding.copy()
