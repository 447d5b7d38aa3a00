"""The baselines that songfeel's embeddings must beat: one vector per whole song.

* :func:`mfcc_statistics`: the mean and standard deviation over time of the stored
  MFCCs, z-scored by a :class:`Standardiser` fitted on training tracks (the classic
  "bag of frames" song descriptor).
* :func:`bliss_features`: the 23 handcrafted features of bliss-rs
  (https://github.com/Polochon-street/bliss-rs), which MECOMP used before its
  learned model, through the ``bliss-audio`` Python bindings. bliss-rs's default
  distance is the plain Euclidean distance on them;
  :func:`bliss_group_weighted_vectors` gives each feature group equal weight instead.
* :class:`MecompModel` and :func:`mecomp_embeddings`: MECOMP's current learned model,
  "AudioEmbeddingTiny" (https://github.com/AnthonyMichaelTDM/mecomp), a 32-d
  L2-normalised embedding of the whole song, run with ONNX Runtime;
  :func:`fetch_mecomp_model` downloads it (SHA-256 verified) where it is missing.

Tables of features are indexed by ``track_id``; the tracks that could not be
analysed come back in a separate table (``track_id, path, error``), as in stage 02.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio, load_audio_like_mecomp
from songfeel.datasets.download import download, file_digest
from songfeel.errors import SongfeelError
from songfeel.native import NativeLibrary, WorkerCrash, map_in_workers, probe, require
from songfeel.store import SKIPPED_COLUMNS, source_fingerprint

if TYPE_CHECKING:
    from songfeel.store import FeatureStore

log = logging.getLogger(__name__)


# --- MFCC statistics -----------------------------------------------------------------------------


def mfcc_statistics(store: FeatureStore, track_ids: Sequence[str]) -> np.ndarray:
    """Mean and standard deviation over time of each track's stored MFCCs.

    Args:
        store: an open :class:`songfeel.store.FeatureStore`.
        track_ids: the tracks, in the order of the output rows.

    Returns:
        float64 array of shape (n_tracks, 2 * n_mfcc): columns ``[0, n_mfcc)`` are the
        means over all frames of each coefficient, columns ``[n_mfcc, 2 n_mfcc)`` the
        (population) standard deviations. Units are those of the stored MFCCs.

    Raises:
        KeyError: a track is not in the store (the track and the store are named).
    """
    n_mfcc = int(store.config.n_mfcc)
    out = np.empty((len(track_ids), 2 * n_mfcc), dtype=np.float64)
    for row, track_id in enumerate(track_ids):
        if track_id not in store:
            raise KeyError(f"{store.path}: track {track_id!r} is not in the feature store")
        frames = store.mfcc(track_id)
        out[row, :n_mfcc] = frames.mean(axis=0, dtype=np.float64)
        out[row, n_mfcc:] = frames.std(axis=0, dtype=np.float64)
    return out


class Standardiser:
    """Z-scores features with the mean and standard deviation of the training tracks.

    Fit on training tracks only, then transform every split with the same
    statistics, so that no test statistic leaks into the features.

    Example::

        scaler = Standardiser().fit(mfcc_statistics(store, train_ids))
        test_features = scaler.transform(mfcc_statistics(store, test_ids))

    Args:
        min_std: floor of the standard deviation, so that a feature that is constant on
            the training tracks does not divide by zero.

    Attributes:
        mean_: (n_features,) training means; None before :meth:`fit`.
        scale_: (n_features,) training standard deviations, at least ``min_std``.
    """

    def __init__(self, min_std: float = 1e-6) -> None:
        if not min_std > 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.min_std = float(min_std)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, features: np.ndarray) -> Standardiser:
        """Learn the mean and standard deviation of each column.

        Args:
            features: (n_tracks, n_features) training features.

        Returns:
            self.

        Raises:
            ValueError: ``features`` is not 2-D, has no rows, or holds NaN/Inf.
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"fit needs a (n_tracks >= 1, n_features) array, got shape {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("fit features hold NaN or Inf")
        self.mean_ = features.mean(axis=0)
        self.scale_ = np.maximum(features.std(axis=0), self.min_std)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Z-score ``features`` (n_tracks, n_features) with the fitted statistics; float64, same shape.

        Raises:
            RuntimeError: called before :meth:`fit`.
            ValueError: the number of columns differs from the fitted one.
        """
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("Standardiser.transform called before fit")
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"expected (n_tracks, {self.mean_.shape[0]}) features, got shape {features.shape}")
        return (features - self.mean_) / self.scale_

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        """:meth:`fit` on ``features``, then :meth:`transform` them."""
        return self.fit(features).transform(features)


# --- bliss-rs ------------------------------------------------------------------------------------

#: The 23 bliss-rs features, in bliss-rs's own order (``AnalysisIndex``, ``src/song.rs``): the order of
#: ``Song.analysis``. Each is normalised by bliss to roughly [-1, 1].
BLISS_FEATURES: tuple[str, ...] = (
    "tempo",
    "zcr",
    "mean_spectral_centroid",
    "std_spectral_centroid",
    "mean_spectral_rolloff",
    "std_spectral_rolloff",
    "mean_spectral_flatness",
    "std_spectral_flatness",
    "mean_loudness",
    "std_loudness",
    *(f"chroma{i}" for i in range(1, 14)),
)

#: bliss-rs's features by the descriptor (and source module) that computes them: ``BPMDesc``
#: (``src/temporal.rs``), ``ZeroCrossingRateDesc`` and ``SpectralDesc`` (``src/timbral.rs``),
#: ``LoudnessDesc`` (``src/misc.rs``) and ``ChromaDesc`` (``src/chroma.rs``); see ``Song::analyze`` in
#: https://github.com/Polochon-street/bliss-rs/blob/master/src/song.rs. The same four groups
#: (tempo, timbre, loudness, chroma) that bliss users weight, e.g.
#: https://github.com/CDrummond/bliss-mixer/issues/6.
BLISS_FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "tempo": ("tempo",),
    "timbre": BLISS_FEATURES[1:8],
    "loudness": ("mean_loudness", "std_loudness"),
    "chroma": BLISS_FEATURES[10:],
}

#: Columns of the bliss cache besides the features: the source file's key and the bliss version.
_BLISS_CACHE_KEY = ("path", "source_size", "source_mtime_ns", "bliss_version")


def _bliss_version() -> str:
    return metadata.version("bliss-audio")


#: The probe of bliss-rs (:func:`songfeel.native.probe`): analyse 3 s of a synthetic chord, written as
#: a WAV file with the standard library only, so that the probe starts in about 0.3 s.
_BLISS_PROBE = """
import math, os, random, struct, tempfile, wave
import bliss_audio
rate, rng, frames = 22050, random.Random(0), bytearray()
for n in range(3 * rate):
    t = n / rate
    level = 1.0 if (4 * n // rate) % 2 == 0 else 0.3
    value = level * (sum(math.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6)) / 4 + 0.05 * rng.uniform(-1, 1))
    frames += struct.pack("<h", int(32767 * value))
fd, path = tempfile.mkstemp(suffix=".wav")
os.close(fd)
try:
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    analysis = bliss_audio.Song(path).analysis
    assert len(analysis) > 0 and all(math.isfinite(v) for v in analysis), analysis
finally:
    os.unlink(path)
"""

#: bliss-rs as a native baseline. The ``bliss-audio`` 0.2.0 wheel on PyPI was built for AVX-512: on a CPU
#: without it, the first analysis dies by SIGILL (seen under gdb at ``vrndscalesd``, an AVX-512F
#: instruction, and under ``qemu-x86_64 -cpu Haswell``); 0.1.x wheels run there but give 20 features.
BLISS = NativeLibrary(method="bliss", package="bliss-audio", probe_code=_BLISS_PROBE,
                      cpu_needs={"0.2.0": "AVX-512"})


def bliss_available(launcher: Sequence[str] = ()) -> str | None:
    """Whether bliss-rs runs on this CPU: None if it does, else the cause in words.

    Runs :data:`BLISS`'s probe once per process in a subprocess (about 0.3 s), see
    :func:`songfeel.native.probe`; ``launcher`` runs it under another command, e.g.
    ``["qemu-x86_64", "-cpu", "Haswell"]`` for a CPU without AVX-512 (default: the
    environment variable ``SONGFEEL_PROBE_LAUNCHER``).
    """
    return probe(BLISS, launcher)


def bliss_analyse(track_id: str, path: str) -> dict:
    """Analyse one file with bliss-rs; never raises for a bad file (runs in a worker).

    bliss panics in Rust on a file it cannot open; PyO3 turns that into
    ``pyo3_runtime.PanicException``, which derives from BaseException, so this catches
    BaseException and lets only KeyboardInterrupt, SystemExit and GeneratorExit through.

    Args:
        track_id: the track's id, returned as is.
        path: the audio file.

    Returns:
        ``{"track_id", "path", "features", "error"}``: ``features`` is bliss's
        ``analysis_dict`` (name -> float) and ``error`` is '' on success; on failure
        ``features`` is None and ``error`` the cause.
    """
    import bliss_audio

    path = str(path)
    if not os.path.isfile(path):
        return {"track_id": track_id, "path": path, "features": None, "error": "file not found"}
    try:
        features = dict(bliss_audio.Song(path).analysis_dict)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - PanicException is a BaseException
        return {"track_id": track_id, "path": path, "features": None,
                "error": f"bliss cannot analyse it: {type(exc).__name__}: {exc}"}
    if not all(np.isfinite(v) for v in features.values()):
        return {"track_id": track_id, "path": path, "features": None,
                "error": "bliss gave NaN or Inf features"}
    return {"track_id": track_id, "path": path, "features": features, "error": ""}


def _read_bliss_cache(cache_path: Path, version: str) -> pd.DataFrame:
    """The cached rows of this bliss version, keyed by path; empty if there is no usable cache."""
    columns = [*_BLISS_CACHE_KEY, *BLISS_FEATURES]
    empty = pd.DataFrame(columns=columns).set_index("path")
    if not cache_path.is_file():
        return empty
    try:
        cache = pd.read_csv(cache_path, dtype={"path": str, "bliss_version": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.warning("ignoring the bliss cache %s: cannot read it: %s", cache_path, exc)
        return empty
    if list(cache.columns) != columns:
        log.warning("ignoring the bliss cache %s: its columns are not %s", cache_path, columns)
        return empty
    cache = cache[cache["bliss_version"] == version].drop_duplicates("path", keep="last")
    return cache.set_index("path")


def _write_bliss_cache(cache_path: Path, cache: pd.DataFrame) -> None:
    """Write the cache atomically (a temporary file renamed over it)."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f"{cache_path.name}.tmp-{os.getpid()}")
    cache.reset_index()[[*_BLISS_CACHE_KEY, *BLISS_FEATURES]].to_csv(tmp, index=False)
    os.replace(tmp, cache_path)


def _cached_features(cache: pd.DataFrame, path: str, version: str) -> list[float] | None:
    """The cached features of ``path`` if its size and mtime are unchanged, else None."""
    if path not in cache.index:
        return None
    try:
        fingerprint = source_fingerprint(path)
    except OSError:
        return None
    row = cache.loc[path]
    if int(row["source_size"]) != fingerprint["source_size"] or \
            int(row["source_mtime_ns"]) != fingerprint["source_mtime_ns"]:
        return None
    return [float(row[name]) for name in BLISS_FEATURES]


def bliss_features(
    paths: Mapping[str, str | Path],
    n_jobs: int = 1,
    cache_path: str | Path | None = None,
    analyse=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 23 bliss-rs features of each file.

    bliss-rs (https://github.com/Polochon-street/bliss-rs, Python package
    ``bliss-audio``) decodes with FFmpeg, resamples to 22050 Hz mono and computes
    tempo, zero-crossing rate, spectral centroid, rolloff and flatness (mean and
    standard deviation), loudness (mean and standard deviation) and 13 chroma
    features over the whole song, each normalised to roughly [-1, 1]. It is
    single-threaded, so ``n_jobs`` analyses several files at once.

    bliss is native code that can kill the process (SIGILL on a CPU without the
    instruction set its wheel was built for, SIGSEGV on a file its decoder trips on), so
    it never runs in this process: before the first file, :data:`BLISS`'s probe runs in a
    subprocess (once per process, about 0.3 s), and the files are analysed in loky worker
    processes (:func:`songfeel.native.map_in_workers`), where a crash costs only its file.

    With ``cache_path``, features are cached in a CSV keyed by the file's path, size,
    modification time and the bliss version; a file whose key is unchanged is not
    analysed again. Failures are not cached, so they are retried.

    Args:
        paths: track id -> audio file.
        n_jobs: files analysed in parallel (-1 for one per core).
        cache_path: optional CSV cache, created or updated.
        analyse: the per-file function run in the workers, ``(track_id, path) -> dict`` as
            :func:`bliss_analyse` (the default); importable, as workers import it.

    Returns:
        ``(features, skipped)``: ``features`` is a float64 DataFrame indexed by
        ``track_id`` (in the order of ``paths``) with the columns :data:`BLISS_FEATURES`;
        ``skipped`` lists the files bliss could not analyse (``track_id, path, error``;
        a file whose worker died names the signal), each also logged as a warning.

    Raises:
        songfeel.native.NativeBaselineUnavailable: bliss cannot run on this machine (its
            probe died, e.g. by SIGILL, or it killed its worker on every file tried);
            with every file cached, no probe runs and nothing is raised.
        ValueError: the installed bliss gives other feature names than :data:`BLISS_FEATURES`.
    """
    version = _bliss_version()
    cache_file = Path(cache_path) if cache_path is not None else None
    cache = _read_bliss_cache(cache_file, version) if cache_file is not None else None
    rows: dict[str, list[float]] = {}
    todo: list[tuple[str, str]] = []
    for track_id, path in paths.items():
        cached = _cached_features(cache, str(path), version) if cache is not None else None
        if cached is None:
            todo.append((track_id, str(path)))
        else:
            rows[track_id] = cached
    if cache is not None:
        log.info("bliss: %d tracks cached in %s, %d to analyse", len(rows), cache_file, len(todo))
    results = []
    if todo:
        require(BLISS)
        for i, result in map_in_workers(analyse or bliss_analyse, todo, n_jobs=n_jobs, desc="bliss", library=BLISS):
            if isinstance(result, WorkerCrash):
                track_id, path = todo[i]
                result = {"track_id": track_id, "path": path, "features": None,
                          "error": f"bliss crashed its worker process on it: {result.cause}"}
            results.append(result)
    skipped, fresh = [], []
    for result in results:
        if result["error"]:
            log.warning("bliss skipped %s (%s): %s", result["track_id"], result["path"], result["error"])
            skipped.append({k: result[k] for k in SKIPPED_COLUMNS})
            continue
        names = set(result["features"])
        if names != set(BLISS_FEATURES):
            raise ValueError(
                f"bliss-audio {version} gives the features {sorted(names)}, "
                f"not the expected {list(BLISS_FEATURES)}"
            )
        rows[result["track_id"]] = [float(result["features"][name]) for name in BLISS_FEATURES]
        fresh.append(result)
    order = [t for t in paths if t in rows]
    features = pd.DataFrame([rows[t] for t in order], index=pd.Index(order, name="track_id"),
                            columns=list(BLISS_FEATURES), dtype=np.float64)
    if cache is not None and fresh:
        new = []
        for result in fresh:
            try:
                fingerprint = source_fingerprint(result["path"])
            except OSError:
                continue
            new.append({"path": result["path"], **fingerprint, "bliss_version": version,
                        **{name: rows[result["track_id"]][i] for i, name in enumerate(BLISS_FEATURES)}})
        update = pd.DataFrame(new, columns=[*_BLISS_CACHE_KEY, *BLISS_FEATURES]).set_index("path")
        kept = cache[~cache.index.isin(update.index)]
        _write_bliss_cache(cache_file, pd.concat([kept, update]) if len(kept) else update)
    skipped_frame = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    order = {t: i for i, t in enumerate(paths)}
    skipped_frame = skipped_frame.sort_values("track_id", key=lambda s: s.map(order)).reset_index(drop=True)
    return features, skipped_frame


def bliss_feature_weights(group_weights: Mapping[str, float] | None = None) -> pd.Series:
    """Per-feature weights that give each bliss feature group a chosen share of the squared distance.

    Feature ``i`` of group ``g`` gets ``w_i = group_weights[g] / len(g)``: with equal group
    weights (the default, 1 each) tempo (1 feature), timbre (7), loudness (2) and chroma
    (13) count the same, instead of chroma making up 13/23 of bliss's plain Euclidean
    distance. The weights are the diagonal of the matrix ``M`` of bliss-rs's
    ``mahalanobis_distance(a, b, M) = sqrt((a - b)^T M (a - b))``
    (https://github.com/Polochon-street/bliss-rs/blob/master/src/playlist.rs).

    Args:
        group_weights: group name (keys of :data:`BLISS_FEATURE_GROUPS`) -> weight >= 0;
            groups left out weigh 1. None: every group weighs 1.

    Returns:
        float64 Series indexed by :data:`BLISS_FEATURES` (bliss's order).

    Raises:
        ValueError: an unknown group, or a negative or non-finite weight.
    """
    group_weights = dict(group_weights or {})
    unknown = set(group_weights) - set(BLISS_FEATURE_GROUPS)
    if unknown:
        raise ValueError(f"unknown bliss feature groups {sorted(unknown)}; the groups are {list(BLISS_FEATURE_GROUPS)}")
    weights = {}
    for group, names in BLISS_FEATURE_GROUPS.items():
        weight = float(group_weights.get(group, 1.0))
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"the weight of bliss feature group {group!r} must be finite and >= 0, got {weight}")
        weights.update({name: weight / len(names) for name in names})
    return pd.Series([weights[name] for name in BLISS_FEATURES], index=list(BLISS_FEATURES), dtype=np.float64)


def bliss_group_weighted_vectors(
    features: pd.DataFrame, group_weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """bliss features scaled so that their Euclidean distance weighs each feature group equally.

    bliss-rs's default distance is the plain, unweighted Euclidean distance on the 23
    features: ``Song::distance`` and ``playlist::euclidean_distance`` use the identity
    matrix ("no metric learning has been done yet"), and the library's Mahalanobis matrix
    ``m`` defaults to ``Array2::eye(NUMBER_FEATURES)``
    (https://github.com/Polochon-street/bliss-rs/blob/master/src/playlist.rs,
    ``src/song.rs``, ``src/library.rs``; the Python bindings' README, too, uses
    ``np.linalg.norm`` of the difference, https://pypi.org/project/bliss-audio/). So
    :func:`bliss_features` with the Euclidean distance *is* bliss's default, and this is
    not: it is the per-group weighting that bliss-rs's README suggests through
    ``mahalanobis_distance`` ("putting more emphasis on certain parts of the features,
    e.g. making the tempo twice as prominent as the timbral features",
    https://github.com/Polochon-street/bliss-rs#further-use), with the groups of
    :data:`BLISS_FEATURE_GROUPS` weighted by :func:`bliss_feature_weights`.

    Each feature is multiplied by ``sqrt(w_i)``, so that the Euclidean distance between two
    rows equals ``sqrt(sum_i w_i (a_i - b_i)^2)``, bliss-rs's Mahalanobis distance with
    ``M = diag(w)``, and any Euclidean tool (triplets, retrieval) computes it.

    Args:
        features: (n_tracks, 23) bliss features with the columns :data:`BLISS_FEATURES`
            (any order), as returned by :func:`bliss_features`.
        group_weights: see :func:`bliss_feature_weights` (None: equal group weights).

    Returns:
        float64 DataFrame of the same index, with the columns :data:`BLISS_FEATURES` in
        bliss's order.

    Raises:
        ValueError: a column of :data:`BLISS_FEATURES` is missing, or a bad group weight.
    """
    missing = [name for name in BLISS_FEATURES if name not in features.columns]
    if missing:
        raise ValueError(f"bliss features lack the columns {missing}")
    scale = np.sqrt(bliss_feature_weights(group_weights))
    return features[list(BLISS_FEATURES)].astype(np.float64) * scale


# --- MECOMP's AudioEmbeddingTiny -----------------------------------------------------------------

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

