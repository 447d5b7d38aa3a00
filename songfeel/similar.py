"""Try songfeel on your own music: embed a folder with the exported model, find a song's neighbours, map it.

    python -m songfeel.similar ~/Music --model results/model.onnx
    python -m songfeel.similar ~/Music --model results/model.onnx --query "Song title" --map library.png

Every audio file under the folder is embedded the way MECOMP would: the whole song,
decoded to mono at 22050 Hz with MECOMP's downmix and resampler
(:func:`songfeel.audio.load_audio_like_mecomp`), through the ONNX model (input ``audio``
float32 [1, n_samples], output ``embedding`` float32 [1, 32]) with ONNX Runtime, one
thread per worker process. Embeddings are cached by file content (SHA-1) and model
(SHA-256) in ``<folder>/.songfeel_similar.npz`` by default, so a rerun embeds only new
or changed files. Bad files (corrupt, silent, shorter than one 2048-sample frame) are
reported and skipped. Outputs:

* ``--out`` (default ``similar_embeddings.csv``): ``path, album, artist, genre, e_00 ... e_31``;
* with ``--query TEXT``: the ``--k`` nearest songs (cosine) of the first file whose path
  contains TEXT, logged and written as ``<out stem>_neighbours.csv``;
* with ``--map PNG``: a 2-D map of the library (UMAP if installed, else t-SNE), coloured
  by ``--colour-by`` (``genre``, ``album``, ``artist`` or ``folder``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from songfeel.audio import MECOMP_SAMPLE_RATE, load_audio_like_mecomp
from songfeel.errors import SongfeelError
from songfeel.hashing import sha1_file

log = logging.getLogger("songfeel.similar")

#: Seconds of audio MECOMP's contract needs at least: one 2048-sample frame at 22050 Hz.
MIN_SECONDS = 2048 / MECOMP_SAMPLE_RATE

_SESSIONS: dict[str, object] = {}


def _session(model_path: str):
    """This worker's ONNX Runtime session of the model (one intra-op thread)."""
    if model_path not in _SESSIONS:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _SESSIONS[model_path] = ort.InferenceSession(model_path, sess_options=options,
                                                     providers=["CPUExecutionProvider"])
    return _SESSIONS[model_path]


def embed_file(path: str, model_path: str, digest: str = "") -> dict:
    """Decode one file as MECOMP does and embed it; never raises for a bad file (runs in a worker).

    Args:
        path: the audio file.
        model_path: the ONNX model.
        digest: the file's SHA-1 if already known (computed otherwise).

    Returns:
        ``{"path", "sha1", "seconds", "embedding", "error"}``: ``embedding`` float32 (dim,)
        or None, ``error`` '' on success, else the cause.
    """
    try:
        digest = digest or sha1_file(path, progress=False)
        samples = load_audio_like_mecomp(path, MECOMP_SAMPLE_RATE, min_seconds=MIN_SECONDS)
    except SongfeelError as exc:
        return {"path": path, "sha1": "", "seconds": 0.0, "embedding": None,
                "error": f"{type(exc).__name__}: {getattr(exc, 'cause', exc)}"}
    except OSError as exc:
        return {"path": path, "sha1": "", "seconds": 0.0, "embedding": None, "error": f"cannot read: {exc}"}
    (embedding,) = _session(model_path).run(["embedding"], {"audio": samples[None, :]})
    return {"path": path, "sha1": digest, "seconds": samples.shape[0] / MECOMP_SAMPLE_RATE,
            "embedding": embedding[0].astype(np.float32), "error": ""}


def _tags(path: Path) -> dict[str, str]:
    from songfeel.datasets.local import open_with_mutagen, read_tags

    audio, _ = open_with_mutagen(path)
    return read_tags(audio)


def model_digest(model_path: str | Path) -> str:
    """SHA-256 of the model file: part of the cache key, so another model never reuses an embedding."""
    return hashlib.sha256(Path(model_path).read_bytes()).hexdigest()


def load_cache(cache_path: Path, digest: str) -> dict[str, np.ndarray]:
    """File SHA-1 -> embedding, from the cache written with this model; {} if none or unreadable."""
    if not cache_path.is_file():
        return {}
    try:
        with np.load(cache_path, allow_pickle=False) as data:
            if str(data["model_sha256"]) != digest:
                log.info("%s: written with another model, not reused", cache_path)
                return {}
            return dict(zip(data["sha1"].tolist(), data["embeddings"]))
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring the cache %s: %s", cache_path, exc)
        return {}


def save_cache(cache_path: Path, digest: str, cache: dict[str, np.ndarray]) -> None:
    """Write the cache atomically."""
    tmp = cache_path.with_name(cache_path.name + ".tmp.npz")
    keys = sorted(cache)
    np.savez(tmp, model_sha256=np.array(digest), sha1=np.array(keys, dtype=str),
             embeddings=np.stack([cache[k] for k in keys]) if keys else np.zeros((0, 0), np.float32))
    tmp.replace(cache_path)


def embed_library(files: Sequence[Path], model_path: str | Path, cache_path: Path | None, n_jobs: int = -1
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Embed every file, reusing cached embeddings of unchanged content.

    Args:
        files: audio files.
        model_path: an ONNX model with MECOMP's contract (songfeel's ``results/model.onnx``, or MECOMP's own).
        cache_path: the NPZ cache (None: no cache).
        n_jobs: worker processes (-1: one per core).

    Returns:
        ``(embeddings, skipped, summary)``: embeddings (n_files, dim) float32 indexed by path;
        skipped ``path, error``; summary ``{"embedded", "cached", "skipped", "audio_seconds",
        "seconds"}`` (audio and wall seconds of the files embedded now).
    """
    import time

    model_path = str(model_path)
    digest = model_digest(model_path)
    cache = load_cache(cache_path, digest) if cache_path is not None else {}
    todo, rows, skipped = [], {}, []
    for path in files:
        try:
            key = sha1_file(path, progress=False)
        except OSError as exc:
            skipped.append({"path": str(path), "error": f"cannot read: {exc}"})
            continue
        if key in cache:
            rows[str(path)] = cache[key]
        else:
            todo.append((str(path), key))
    n_cached = len(rows)
    started = time.perf_counter()
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(embed_file)(p, model_path, key) for p, key in todo)
    audio_seconds = 0.0
    for result in tqdm(results, total=len(todo), desc="embed", unit="song"):
        if result["error"]:
            log.warning("skipped %s: %s", result["path"], result["error"])
            skipped.append({"path": result["path"], "error": result["error"]})
            continue
        rows[result["path"]] = result["embedding"]
        cache[result["sha1"]] = result["embedding"]
        audio_seconds += result["seconds"]
    seconds = time.perf_counter() - started
    if cache_path is not None and len(rows) > n_cached:
        save_cache(cache_path, digest, cache)
    order = [str(p) for p in files if str(p) in rows]
    dim = len(next(iter(rows.values()))) if rows else 0
    embeddings = pd.DataFrame(np.stack([rows[p] for p in order]) if order else np.zeros((0, dim), np.float32),
                              index=pd.Index(order, name="path"), columns=[f"e_{i:02d}" for i in range(dim)])
    summary = {"embedded": len(rows) - n_cached, "cached": n_cached, "skipped": len(skipped),
               "audio_seconds": audio_seconds, "seconds": seconds}
    return embeddings, pd.DataFrame(skipped, columns=["path", "error"]), summary


def nearest(embeddings: pd.DataFrame, query: str, k: int = 10) -> pd.DataFrame:
    """The ``k`` nearest other songs (cosine similarity) of the first song whose path contains ``query``.

    Returns:
        ``rank, path, cosine``, best first.

    Raises:
        KeyError: no path contains ``query``.
    """
    matches = [p for p in embeddings.index if query.lower() in p.lower()]
    if not matches:
        raise KeyError(f"no song's path contains {query!r}")
    unit = embeddings.to_numpy(np.float64, copy=True)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True).clip(1e-12)
    row = embeddings.index.get_loc(matches[0])
    cosine = unit @ unit[row]
    order = [i for i in np.argsort(-cosine, kind="stable") if i != row][:k]
    return pd.DataFrame({"rank": range(1, len(order) + 1), "path": embeddings.index[order], "cosine": cosine[order]})


def main(argv: Sequence[str] | None = None) -> int:
    from songfeel.datasets.local import DEFAULT_EXTENSIONS, find_audio_files

    parser = argparse.ArgumentParser(prog="python -m songfeel.similar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of music (searched recursively)")
    parser.add_argument("--model", type=Path, default=Path("results/model.onnx"), help="the exported ONNX model")
    parser.add_argument("--out", type=Path, default=Path("similar_embeddings.csv"), help="embeddings CSV to write")
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding cache (default: <folder>/.songfeel_similar.npz; 'none' to disable)")
    parser.add_argument("--query", default=None, help="print the nearest songs of the first path containing this")
    parser.add_argument("--k", type=int, default=10, help="neighbours to print")
    parser.add_argument("--map", type=Path, default=None, help="write a 2-D map of the library to this PNG")
    parser.add_argument("--colour-by", default="genre", choices=["genre", "album", "artist", "folder"])
    parser.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: one per core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.model.is_file():
        log.error("%s: no model (run dvc repro, or pass --model)", args.model)
        return 2
    files = find_audio_files(args.folder, DEFAULT_EXTENSIONS)
    if not files:
        log.error("%s: no audio files (%s)", args.folder, ", ".join(DEFAULT_EXTENSIONS))
        return 2
    if args.cache is not None and str(args.cache).lower() == "none":
        cache = None
    else:
        cache = args.cache or args.folder / ".songfeel_similar.npz"
    embeddings, skipped, summary = embed_library(files, args.model, cache, args.jobs)
    log.info("%d songs: %d embedded (%.0f s of audio in %.1f s), %d from the cache, %d skipped", len(files),
             summary["embedded"], summary["audio_seconds"], summary["seconds"], summary["cached"], summary["skipped"])
    tags = pd.DataFrame([{"path": p, **_tags(Path(p)), "folder": Path(p).parent.name} for p in embeddings.index])
    table = tags.set_index("path")[["album", "artist", "genre", "folder"]].join(embeddings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out)
    log.info("wrote %s", args.out)
    if len(skipped):
        skipped.to_csv(args.out.with_name(args.out.stem + "_skipped.csv"), index=False)
    if args.query:
        try:
            neighbours = nearest(embeddings, args.query, args.k)
        except KeyError as exc:
            log.error("%s", exc.args[0])
            return 1
        neighbours.to_csv(args.out.with_name(args.out.stem + "_neighbours.csv"), index=False)
        log.info("nearest songs of %s:\n%s", [p for p in embeddings.index if args.query.lower() in p.lower()][0],
                 neighbours.to_string(index=False))
    if args.map:
        from songfeel.report.plots import plot_embedding_map

        labels = table[args.colour_by].replace("", "unknown")
        projection = plot_embedding_map(embeddings, labels, args.map, f"{args.folder.name}: songfeel embeddings")
        log.info("wrote %s (%s, coloured by %s)", args.map, projection, args.colour_by)
    return 0


if __name__ == "__main__":
    sys.exit(main())
