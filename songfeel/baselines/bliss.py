"""The bliss-rs baseline: 23 handcrafted features per song, crash-isolated.

:func:`bliss_features` computes the 23 features of bliss-rs
(https://github.com/Polochon-street/bliss-rs), which MECOMP used before its learned
model, through the ``bliss-audio`` Python bindings. bliss is native code that can kill
the process, so it is probed in a subprocess (:data:`BLISS`, :func:`bliss_available`)
and run in worker processes (:func:`songfeel.native.map_in_workers`), which import
:func:`bliss_analyse` by name. bliss-rs's default distance is the plain Euclidean
distance on the features; :func:`bliss_group_weighted_vectors` gives each feature group
(:data:`BLISS_FEATURE_GROUPS`) equal weight instead.

Tables of features are indexed by ``track_id``; the tracks that could not be
analysed come back in a separate table (``track_id, path, error``), as in stage 02.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from songfeel.native import NativeLibrary, WorkerCrash, map_in_workers, probe, require
from songfeel.store import SKIPPED_COLUMNS, source_fingerprint

log = logging.getLogger(__name__)

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


def _split_cached(paths: Mapping[str, str | Path], cache: pd.DataFrame | None,
                  version: str) -> tuple[dict[str, list[float]], list[tuple[str, str]]]:
    """The cached features (track id -> features) and the ``(track_id, path)`` calls left to analyse."""
    rows: dict[str, list[float]] = {}
    todo: list[tuple[str, str]] = []
    for track_id, path in paths.items():
        cached = _cached_features(cache, str(path), version) if cache is not None else None
        if cached is None:
            todo.append((track_id, str(path)))
        else:
            rows[track_id] = cached
    return rows, todo


def _analyse_in_workers(todo: list[tuple[str, str]], n_jobs: int, analyse) -> list[dict]:
    """``analyse`` of each call in loky workers after :data:`BLISS`'s probe; a worker's death is its file's error."""
    require(BLISS)
    results = []
    for i, result in map_in_workers(analyse, todo, n_jobs=n_jobs, desc="bliss", library=BLISS):
        if isinstance(result, WorkerCrash):
            track_id, path = todo[i]
            result = {"track_id": track_id, "path": path, "features": None,
                      "error": f"bliss crashed its worker process on it: {result.cause}"}
        results.append(result)
    return results


def _collect_results(results: list[dict], rows: dict[str, list[float]],
                     version: str) -> tuple[list[dict], list[dict]]:
    """Add each analysed track's features to ``rows``; return the skipped rows and the fresh results.

    Raises:
        ValueError: bliss gave other feature names than :data:`BLISS_FEATURES`.
    """
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
    return skipped, fresh


def _update_bliss_cache(cache_path: Path, cache: pd.DataFrame, fresh: list[dict], rows: dict[str, list[float]],
                        version: str) -> None:
    """Write ``cache`` with the freshly analysed files added or replaced (a file gone since is left out)."""
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
    _write_bliss_cache(cache_path, pd.concat([kept, update]) if len(kept) else update)


def _skipped_in_order(skipped: list[dict], paths: Mapping[str, str | Path]) -> pd.DataFrame:
    """The skipped files as a table (``track_id, path, error``) in the order of ``paths``."""
    skipped_frame = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    order = {t: i for i, t in enumerate(paths)}
    return skipped_frame.sort_values("track_id", key=lambda s: s.map(order)).reset_index(drop=True)


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
    rows, todo = _split_cached(paths, cache, version)
    if cache is not None:
        log.info("bliss: %d tracks cached in %s, %d to analyse", len(rows), cache_file, len(todo))
    results = _analyse_in_workers(todo, n_jobs, analyse or bliss_analyse) if todo else []
    skipped, fresh = _collect_results(results, rows, version)
    order = [t for t in paths if t in rows]
    features = pd.DataFrame([rows[t] for t in order], index=pd.Index(order, name="track_id"),
                            columns=list(BLISS_FEATURES), dtype=np.float64)
    if cache is not None and fresh:
        _update_bliss_cache(cache_file, cache, fresh, rows, version)
    return features, _skipped_in_order(skipped, paths)


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
