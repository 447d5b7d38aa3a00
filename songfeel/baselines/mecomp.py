"""The MECOMP baseline: MECOMP's learned model, "AudioEmbeddingTiny", run with ONNX Runtime.

:class:`MecompModel` and :func:`mecomp_embeddings` embed whole songs with MECOMP's
current model (https://github.com/AnthonyMichaelTDM/mecomp), a 32-d L2-normalised
embedding; :func:`fetch_mecomp_model` downloads it (SHA-256 verified) where it is
missing, and :func:`find_mecomp_model` finds it as the ``mecomp`` config group
(``conf/mecomp/``) places it.

Tables of embeddings are indexed by ``track_id``; the tracks that could not be
decoded come back in a separate table (``track_id, path, error``), as in stage 02.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio, load_audio_like_mecomp
from songfeel.datasets.download import download, file_digest
from songfeel.errors import SongfeelError
from songfeel.store import SKIPPED_COLUMNS

log = logging.getLogger(__name__)

#: The commit of https://github.com/AnthonyMichaelTDM/mecomp-nextgen-analysis that holds MECOMP's
#: model (6c7dfe9 in full), its raw download address and its SHA-256 (as shipped in shared/baselines/).
MECOMP_MODEL_COMMIT = "6c7dfe9c2943f50378df1209b52565ace24d6e55"
MECOMP_MODEL_URL = ("https://raw.githubusercontent.com/AnthonyMichaelTDM/mecomp-nextgen-analysis/"
                    f"{MECOMP_MODEL_COMMIT}/models/audio_embedding_model.onnx")
MECOMP_MODEL_SHA256 = "b0fc2828d7496a274f091cc8b13e3a11fe045f2459f069e68b2ba19ddb6058b0"


class MecompModelHashError(SongfeelError):
    """A file already at the MECOMP model's place is not the expected model; it is kept.

    Attributes:
        path: the file.
        expected: the expected SHA-256 (hex).
        actual: the file's SHA-256 (hex).
    """

    def __init__(self, path: str | Path, expected: str, actual: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(f"{self.path}: not MECOMP's model: SHA-256 {actual}, expected {expected}; the file was "
                         "kept (move it away to download the model there, or point mecomp.onnx elsewhere)")


def find_mecomp_model(mecomp) -> Path | None:
    """MECOMP's model as the ``mecomp`` config group (``conf/mecomp/``) places it: ``onnx`` if that file
    exists; else, with ``fetch``, downloaded once (SHA-256 verified) to ``download``
    (:func:`fetch_mecomp_model`); else None, with a warning, and the caller leaves MECOMP out.

    Raises:
        MecompModelHashError: a file at ``download`` is not MECOMP's model (it is kept).
    """
    configured = str(mecomp.get("onnx") or "")
    if configured and Path(configured).is_file():
        return Path(configured)
    if not mecomp.get("fetch", False) or not mecomp.get("download"):
        log.warning("MECOMP's model not found at %r and fetching is off: MECOMP's model is left out", configured)
        return None
    try:
        return fetch_mecomp_model(mecomp["download"], mecomp["url"], mecomp["sha256"])
    except MecompModelHashError:
        raise
    except (OSError, SongfeelError) as exc:
        log.warning("MECOMP's model could not be fetched (%s): it is left out", exc)
        return None


def fetch_mecomp_model(
    dest: str | Path,
    url: str = MECOMP_MODEL_URL,
    sha256: str = MECOMP_MODEL_SHA256,
    retries: int = 2,
    timeout: float = 60.0,
) -> Path:
    """MECOMP's ONNX model at ``dest``, downloaded and verified if it is not there yet.

    An existing ``dest`` is hashed (the model is under 1 MB) and returned if its SHA-256
    matches, without any request. An existing file that does not match raises and is left
    untouched: it may be the user's own file. A missing ``dest`` is downloaded from
    ``url`` with :func:`songfeel.datasets.download.download` (streaming, resumable,
    retried), verified against ``sha256`` before it is renamed to ``dest``, and stamped
    (``<dest>.sha256``). The default is "AudioEmbeddingTiny" of
    https://github.com/AnthonyMichaelTDM/mecomp-nextgen-analysis at commit 6c7dfe9,
    ``models/audio_embedding_model.onnx`` (MIT), the model that MECOMP ships.

    Args:
        dest: where the model is, or is to be written (the folder is created).
        url: http(s) address of the model.
        sha256: its expected SHA-256, 64 hex digits.
        retries: further download attempts after the first one fails.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest``, holding bytes whose SHA-256 is ``sha256``.

    Raises:
        MecompModelHashError: ``dest`` exists with another SHA-256 (it is kept).
        songfeel.datasets.download.ChecksumError: the downloaded bytes do not match
            ``sha256`` (nothing is left at ``dest``).
        songfeel.datasets.download.DownloadError: HTTP error or no connection.
        ValueError: ``sha256`` is not 64 hex digits.
        OSError: ``dest`` cannot be written.
    """
    dest, expected = Path(dest), sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if dest.is_file():
        actual = file_digest(dest, "sha256")
        if actual != expected:
            raise MecompModelHashError(dest, expected, actual)
        log.info("%s: MECOMP's model is present (SHA-256 verified)", dest)
        return dest
    log.info("%s: MECOMP's model is missing, downloading it from %s", dest, url)
    return download(url, dest, sha256=expected, retries=retries, timeout=timeout)


#: Input and output names of MECOMP's ONNX model.
MECOMP_INPUT, MECOMP_OUTPUT = "audio", "embedding"

#: Dimension of MECOMP's embedding.
MECOMP_DIM = 32

#: Samples per frame of MECOMP's model: it cuts the audio into non-overlapping frames of this many
#: samples (about 93 ms at 22050 Hz), so a shorter input has no frame (ONNX Runtime aborts the process).
MECOMP_FRAME_SAMPLES = 2048


class MecompModel:
    """MECOMP's "AudioEmbeddingTiny" model, run with ONNX Runtime on the CPU.

    The model (https://github.com/AnthonyMichaelTDM/mecomp, shipped as
    ``analysis/models/audio_embedding_model.onnx``; trained in mecomp-nextgen-analysis)
    takes the whole song, mono at 22050 Hz, cuts it into non-overlapping 2048-sample
    frames, runs two depthwise-separable Conv1d blocks and a 2-layer GRU, pools with
    attention and projects to a 32-d L2-normalised embedding (about 213 k parameters).

    Args:
        onnx_path: the ONNX file (input ``audio`` float32 [batch, n_samples], output
            ``embedding`` float32 [batch, 32]).
        intra_op_threads: ONNX Runtime's intra-op threads; None for its default
            (one per physical core).

    Raises:
        FileNotFoundError: ``onnx_path`` does not exist.
        ValueError: the model's inputs or outputs are not MECOMP's.
    """

    def __init__(self, onnx_path: str | Path, intra_op_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"{self.onnx_path}: MECOMP's ONNX model not found")
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if inputs != [MECOMP_INPUT] or MECOMP_OUTPUT not in outputs or outputs[MECOMP_OUTPUT][-1] != MECOMP_DIM:
            raise ValueError(
                f"{self.onnx_path}: not MECOMP's model: inputs {inputs}, outputs {outputs} "
                f"(expected input {MECOMP_INPUT!r} and output {MECOMP_OUTPUT!r} [batch, {MECOMP_DIM}])"
            )

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """Embed one whole song, as MECOMP does: a batch of one, without padding.

        Args:
            samples: mono audio at 22050 Hz, shape (n_samples,), float (cast to float32).

        Returns:
            float32 array of shape (32,), of unit L2 norm.

        Raises:
            ValueError: ``samples`` is not 1-D, holds NaN/Inf, or is shorter than
                2048 samples (one frame; ONNX Runtime would abort the process).
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono, shape (n_samples,), got {samples.shape}")
        if samples.shape[0] < MECOMP_FRAME_SAMPLES:
            raise ValueError(f"MECOMP needs at least {MECOMP_FRAME_SAMPLES} samples (one frame), "
                             f"got {samples.shape[0]}")
        if not np.isfinite(samples).all():
            raise ValueError("samples hold NaN or Inf")
        (embedding,) = self.session.run([MECOMP_OUTPUT], {MECOMP_INPUT: samples[None, :]})
        return embedding[0].astype(np.float32, copy=False)


def mecomp_columns() -> list[str]:
    """Column names of MECOMP embedding tables: ``mecomp_00`` ... ``mecomp_31``."""
    return [f"mecomp_{i:02d}" for i in range(MECOMP_DIM)]


def mecomp_embeddings(
    paths: Mapping[str, str | Path],
    onnx_path: str | Path,
    intra_op_threads: int | None = None,
    like_mecomp: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MECOMP's embedding of each file, one whole song at a time.

    Each file is decoded to mono at 22050 Hz with :func:`songfeel.audio.load_audio`
    (channel mean, soxr), or with ``like_mecomp`` by
    :func:`songfeel.audio.load_audio_like_mecomp` (MECOMP's sqrt(2) stereo downmix and
    cubic resampler), then embedded by :class:`MecompModel`.

    Args:
        paths: track id -> audio file.
        onnx_path: MECOMP's ONNX model.
        intra_op_threads: ONNX Runtime's intra-op threads (None: its default).
        like_mecomp: decode as MECOMP does rather than as songfeel does.

    Returns:
        ``(embeddings, skipped)``: a float32 DataFrame indexed by ``track_id`` (in the
        order of ``paths``) with the 32 columns :func:`mecomp_columns`, unit L2 norm per
        row; and the files that could not be decoded (missing, corrupt, shorter than
        one 2048-sample frame, or digital silence) as ``track_id, path, error``, each
        also logged as a warning.

    Raises:
        FileNotFoundError: ``onnx_path`` does not exist.
    """
    model = MecompModel(onnx_path, intra_op_threads=intra_op_threads)
    loader = load_audio_like_mecomp if like_mecomp else load_audio
    min_seconds = MECOMP_FRAME_SAMPLES / MECOMP_SAMPLE_RATE
    ids, vectors, skipped = [], [], []
    for track_id, path in tqdm(paths.items(), total=len(paths), desc="mecomp", unit="track"):
        try:
            samples = loader(path, sample_rate=MECOMP_SAMPLE_RATE, min_seconds=min_seconds)
        except SongfeelError as exc:
            cause = getattr(exc, "cause", str(exc))
            error = f"{type(exc).__name__}: {cause}"
            log.warning("mecomp skipped %s (%s): %s", track_id, path, error)
            skipped.append({"track_id": track_id, "path": str(path), "error": error})
            continue
        ids.append(track_id)
        vectors.append(model.embed(samples))
    matrix = np.stack(vectors) if vectors else np.empty((0, MECOMP_DIM), dtype=np.float32)
    embeddings = pd.DataFrame(matrix, index=pd.Index(ids, name="track_id"), columns=mecomp_columns())
    return embeddings, pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
