"""musicnn as a teacher: per-patch tags and features of a pretrained music tagger.

musicnn (Pons & Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR 2019 late-breaking demo; PyPI ``musicnn`` 0.1.0, ISC licence)
ships four TensorFlow 1 checkpoints in its wheel: ``MTT_musicnn`` and ``MTT_vgg``
(MagnaTagATune, 50 tags), ``MSD_musicnn`` and ``MSD_vgg`` (Million Song Dataset,
last.fm's top-50 tags). Input: 16 kHz mono, a 96-band log-mel ``log10(10000 mel + 1)``
(n_fft 512, hop 256), in 3 s patches of 187 frames.

This module is the only one of songfeel that imports TensorFlow, and only inside
:class:`MusicnnTeacher`; training, evaluation and export read the cached targets
(:mod:`songfeel.teacher.targets`). It works around three defects of musicnn's own
``extractor``:

* it casts the mel spectrogram to float16 before multiplying by 10000, which overflows
  to inf on loud songs (every patch NaN): :func:`teacher_log_mel` stays in float32;
* its tags depend on the input level: :func:`normalise_loudness` brings every song to
  the same integrated loudness (ITU-R BS.1770, with pyloudnorm) first;
* it restores the checkpoint in a bare ``try/except``, so a failed load runs random
  weights silently: :class:`MusicnnTeacher` restores by the checkpoint prefix and checks
  every variable against the checkpoint file (:class:`TeacherLoadError` otherwise).

Environment: TensorFlow >= 2.16 needs ``TF_USE_LEGACY_KERAS=1`` (with ``tf-keras``) for
musicnn's ``tf.compat.v1.layers``; :class:`MusicnnTeacher` sets it before the import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import librosa
import numpy as np

from songfeel.errors import SongfeelError

log = logging.getLogger(__name__)

#: musicnn's input: sample rate (Hz), FFT size and hop (samples), mel bands, frames per 3 s patch.
TEACHER_SAMPLE_RATE, TEACHER_N_FFT, TEACHER_HOP_LENGTH, TEACHER_N_MELS = 16000, 512, 256, 96
PATCH_FRAMES = 187

#: The teacher models in the wheel, and the per-patch outputs each gives (name -> width).
MODELS: dict[str, dict[str, int]] = {
    "MTT_musicnn": {"tags": 50, "penultimate": 200, "mean_pool": 753, "max_pool": 753},
    "MSD_musicnn": {"tags": 50, "penultimate": 200, "mean_pool": 753, "max_pool": 753},
    "MTT_vgg": {"tags": 50, "pool5": 256},
    "MSD_vgg": {"tags": 50, "pool5": 256},
}


class TeacherLoadError(SongfeelError):
    """The teacher's checkpoint could not be restored, or restored other values than the file holds.

    Attributes:
        path: the checkpoint prefix.
        cause: why.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path, self.cause = str(path), cause
        super().__init__(f"{self.path}: {cause}")


def normalise_loudness(samples: np.ndarray, sample_rate: int, target_lufs: float,
                       max_gain_db: float = 30.0) -> np.ndarray:
    """``samples`` scaled to an integrated loudness of ``target_lufs`` (ITU-R BS.1770-4, pyloudnorm).

    Args:
        samples: mono audio, shape (n_samples,), float.
        sample_rate: Hz.
        target_lufs: the loudness to reach, LUFS (-14: streaming services' level).
        max_gain_db: the gain is clipped to +-this many dB, so a near-silent song is not
            blown up into noise.

    Returns:
        float32 array of the same shape. Peaks may exceed 1: the teacher's log-mel does not clip.

    Raises:
        ValueError: ``samples`` is not 1-D, holds NaN/Inf, or is shorter than 0.4 s (one
            BS.1770 gating block).
    """
    import pyloudnorm

    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1 or not np.isfinite(samples).all():
        raise ValueError(f"samples must be finite mono audio (n_samples,), got shape {samples.shape}")
    if samples.shape[0] < int(0.4 * sample_rate):
        raise ValueError(f"{samples.shape[0]} samples at {sample_rate} Hz: shorter than one 0.4 s loudness block")
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(samples)
    gain_db = 0.0 if not np.isfinite(loudness) else float(np.clip(target_lufs - loudness, -max_gain_db, max_gain_db))
    return (samples * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def teacher_log_mel(samples: np.ndarray) -> np.ndarray:
    """musicnn's input representation, in float32: ``log10(10000 * mel + 1)``.

    The mel power spectrogram of librosa (n_fft 512, hop 256, 96 bands, centred frames)
    at 16 kHz, as musicnn's ``batch_data`` computes it, but never cast to float16, which
    overflows on loud audio (a mel power above 65504 / 10000 becomes inf).

    Args:
        samples: mono audio at 16 kHz, shape (n_samples,).

    Returns:
        float32 array of shape (n_frames, 96), finite for finite input.
    """
    mel = librosa.feature.melspectrogram(y=np.asarray(samples, dtype=np.float32), sr=TEACHER_SAMPLE_RATE,
                                         n_fft=TEACHER_N_FFT, hop_length=TEACHER_HOP_LENGTH, n_mels=TEACHER_N_MELS)
    return np.log10(10000.0 * mel.astype(np.float32).T + 1.0)


def patch_starts(n_frames: int, hop_frames: int) -> np.ndarray:
    """First frame of each whole :data:`PATCH_FRAMES` patch, every ``hop_frames`` frames; (n_patches,) int.

    A song shorter than one patch gets no patch (an empty array).
    """
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
    return np.arange(0, max(n_frames - PATCH_FRAMES + 1, 0), hop_frames, dtype=np.int64)


def checkpoint_prefix(model: str) -> str:
    """The checkpoint prefix of ``model`` inside the installed musicnn wheel (``.../musicnn/MTT_vgg/``).

    The wheel's ``checkpoint`` files point at its author's home directory, so the
    checkpoint is found by its prefix, not by ``tf.train.latest_checkpoint``. The files
    are named ``.index`` and ``.data-00000-of-00001`` inside the model's folder, so the
    prefix is the folder's path with a trailing separator.

    Raises:
        ValueError: ``model`` is not one of :data:`MODELS`.
        ModuleNotFoundError: musicnn is not installed.
    """
    if model not in MODELS:
        raise ValueError(f"unknown teacher model {model!r}; the models are {sorted(MODELS)}")
    import importlib.util

    spec = importlib.util.find_spec("musicnn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("musicnn is not installed (pip install --no-deps musicnn==0.1.0)")
    return str(Path(spec.origin).parent / model) + os.sep


class MusicnnTeacher:
    """One musicnn model in a TensorFlow 1 session, restored and checked once.

    Args:
        model: one of :data:`MODELS`.
        outputs: the per-patch outputs to return, e.g. ``("tags", "pool5")``; each a key of
            ``MODELS[model]``.
        checkpoint: the checkpoint prefix (a folder's prefix ends with a separator); None:
            the one inside the musicnn wheel (:func:`checkpoint_prefix`).
        batch_size: patches per session run.
        num_threads: TensorFlow's intra- and inter-op threads (1: one core per worker).

    Raises:
        ValueError: an unknown model or output.
        TeacherLoadError: the checkpoint cannot be restored, or a restored variable differs
            from the value stored in the checkpoint file (the load failed silently).

    Attributes:
        n_parameters: the model's trainable parameters.
    """

    def __init__(self, model: str = "MTT_vgg", outputs: Sequence[str] = ("tags", "pool5"),
                 checkpoint: str | Path | None = None, batch_size: int = 32, num_threads: int = 1) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown teacher model {model!r}; the models are {sorted(MODELS)}")
        unknown = [name for name in outputs if name not in MODELS[model]]
        if unknown or not outputs:
            raise ValueError(f"{model} gives the outputs {list(MODELS[model])}, not {unknown or 'none'}")
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        from musicnn import models as musicnn_models

        self.model, self.outputs, self.batch_size = model, tuple(outputs), int(batch_size)
        self.checkpoint = str(checkpoint) if checkpoint is not None else checkpoint_prefix(model)
        tf.compat.v1.disable_eager_execution()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, TEACHER_N_MELS])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            with tf.name_scope("model"):
                built = musicnn_models.define_model(self.x, self.is_training, model, MODELS[model]["tags"])
            if "vgg" in model:
                logits, pool5 = built[0], built[5]
                tensors = {"tags": tf.nn.sigmoid(logits), "pool5": tf.compat.v1.layers.flatten(pool5)}
            else:
                logits, mean_pool, max_pool, penultimate = built[0], built[6], built[7], built[8]
                tensors = {"tags": tf.nn.sigmoid(logits), "penultimate": penultimate,
                           "mean_pool": mean_pool, "max_pool": max_pool}
            self.tensors = [tensors[name] for name in self.outputs]
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=num_threads,
                                              inter_op_parallelism_threads=num_threads)
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            variables = tf.compat.v1.global_variables()
            # Initialised first, as musicnn does: a restore that silently did nothing then leaves random
            # weights, which the check below tells from the checkpoint's.
            self.session.run(tf.compat.v1.global_variables_initializer())
            try:
                tf.compat.v1.train.Saver(variables).restore(self.session, self.checkpoint)
                reader = tf.compat.v1.train.NewCheckpointReader(self.checkpoint)
            except (tf.errors.OpError, ValueError) as exc:
                raise TeacherLoadError(self.checkpoint, f"cannot restore {model}: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0]}") from exc
            values = self.session.run(variables)
            self.n_parameters = int(sum(np.prod(v.shape) for v in tf.compat.v1.trainable_variables()))
        for variable, value in zip(variables, values):
            name = variable.op.name
            if not reader.has_tensor(name):
                raise TeacherLoadError(self.checkpoint, f"{model}: variable {name} is not in the checkpoint")
            if not np.array_equal(value, reader.get_tensor(name)):
                raise TeacherLoadError(self.checkpoint, f"{model}: variable {name} differs from the checkpoint's")
        log.info("teacher %s restored from %s (%d variables checked)", model, self.checkpoint, len(variables))

    @property
    def widths(self) -> dict[str, int]:
        """Output name -> width."""
        return {name: MODELS[self.model][name] for name in self.outputs}

    def patches(self, log_mel: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The teacher's outputs for the patches of ``log_mel`` starting at ``starts``.

        Args:
            log_mel: (n_frames, 96) float32 from :func:`teacher_log_mel`.
            starts: (n_patches,) first frames, each with ``start + 187 <= n_frames``.

        Returns:
            output name -> float32 (n_patches, width).
        """
        out = {name: np.empty((len(starts), width), np.float32) for name, width in self.widths.items()}
        for begin in range(0, len(starts), self.batch_size):
            batch = np.stack([log_mel[s:s + PATCH_FRAMES] for s in starts[begin:begin + self.batch_size]])
            values = self.session.run(self.tensors, {self.x: batch, self.is_training: False})
            for name, value in zip(self.outputs, values):
                out[name][begin:begin + len(batch)] = value.reshape(len(batch), -1)
        return out

    def close(self) -> None:
        """Release the TensorFlow session."""
        self.session.close()


__all__ = ["MODELS", "MusicnnTeacher", "PATCH_FRAMES", "TEACHER_HOP_LENGTH", "TEACHER_N_FFT", "TEACHER_N_MELS",
           "TEACHER_SAMPLE_RATE", "TeacherLoadError", "checkpoint_prefix", "normalise_loudness", "patch_starts",
           "teacher_log_mel"]
