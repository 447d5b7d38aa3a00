"""The held-out benchmark: every trained variant and the three baselines on the same test triplets.

The test triplets are the ``label`` triplets of the test split: anchor and
positive share a label (on the soundtracks, one soundtrack), the negative has
another, and every member is a whole song. Each method gives one vector per
whole song:

* every trained variant (its embedding of the whole stored log-mel),
* ``mfcc``: the mean and standard deviation of the stored MFCCs over the song,
  z-scored with statistics of the training songs,
* ``bliss``: bliss-rs's 23 features, MECOMP's handcrafted analysis (PyPI ``bliss-audio``),
* ``mecomp``: MECOMP's current ONNX model, "AudioEmbeddingTiny", on the whole song.

Triplet accuracy is the share with d(anchor, positive) < d(anchor, negative)
(2-way, chance 1/2) and the share where anchor-positive is the closest of the
three pairs (odd-one-out, chance 1/3), Euclidean, each with a 95 %
cluster-bootstrap confidence interval that resamples anchor songs (triplets
sharing an anchor are not independent). With labels, label retrieval over the
test songs adds precision@k and mean average precision. A song that a
baseline cannot analyse is reported, and its triplets are left out of every
method, so that all rows count the same triplets.

:func:`decode_robustness` checks that a variant's embedding of a song decoded
as songfeel decodes it (mean downmix, soxr) stays close to the embedding of the
same song decoded as MECOMP does ((L+R)·√2/2 downmix, cubic resampling).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from songfeel import baselines
from songfeel.audio import load_audio, load_audio_like_mecomp
from songfeel.embed import embed_excerpts
from songfeel.errors import SongfeelError
from songfeel.features import log_mel
from songfeel.metrics.retrieval import mean_average_precision, precision_at_k
from songfeel.metrics.triplet import bootstrap_ci, odd_one_out_correct, triplet_correct
from songfeel.store import FeatureStore
from songfeel.triplets import ROLES

log = logging.getLogger(__name__)

#: Columns of the benchmark table.
TABLE_COLUMNS = ("method", "kind", "n_triplets", "accuracy", "ci_low", "ci_high",
                 "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high", "precision_at_k", "map")


def heldout_triplets(table: pd.DataFrame) -> pd.DataFrame:
    """The whole-song label triplets of the test split: (anchor, positive, negative) track ids."""
    test = table[(table["split"] == "test") & (table["kind"] == "label")]
    return test[[f"{role}_track" for role in ROLES]].rename(columns=lambda c: c.removesuffix("_track"))


def variant_vectors(model, store: FeatureStore, track_ids: Sequence[str], batch_size: int) -> pd.DataFrame:
    """A variant's embedding of every whole song, indexed by track id: (n_tracks, embedding_dim)."""
    excerpts = [(t, 0, store.n_frames(t)) for t in track_ids]
    return pd.DataFrame(embed_excerpts(model, store, excerpts, batch_size), index=list(track_ids))


def mfcc_vectors(store: FeatureStore, train_ids: Sequence[str], track_ids: Sequence[str]) -> pd.DataFrame:
    """MFCC mean/std per song, z-scored with the training songs' statistics: (n_tracks, 2 * n_mfcc)."""
    scaler = baselines.Standardiser().fit(baselines.mfcc_statistics(store, train_ids))
    return pd.DataFrame(scaler.transform(baselines.mfcc_statistics(store, track_ids)), index=list(track_ids))


def score(vectors: pd.DataFrame, triplets: pd.DataFrame, n_resamples: int, seed: int) -> dict:
    """2-way and odd-one-out triplet accuracy of one method, each with its cluster-bootstrap 95 % CI."""
    a, p, n = (vectors.loc[triplets[role]].to_numpy(np.float64) for role in ROLES)
    clusters = triplets["anchor"].to_numpy()
    mean, low, high = bootstrap_ci(triplet_correct(a, p, n), n_resamples=n_resamples, seed=seed, clusters=clusters)
    ooo, ooo_low, ooo_high = bootstrap_ci(odd_one_out_correct(a, p, n), n_resamples=n_resamples, seed=seed,
                                          clusters=clusters)
    return {"n_triplets": int(len(a)), "accuracy": mean, "ci_low": low, "ci_high": high,
            "odd_one_out": ooo, "odd_one_out_ci_low": ooo_low, "odd_one_out_ci_high": ooo_high}


def retrieval(vectors: pd.DataFrame, labels: pd.Series | None, k: int) -> dict:
    """Precision@k and mAP of label retrieval among the songs of ``vectors`` (NaN without labels)."""
    if labels is None or len(vectors) < 2:
        return {"precision_at_k": float("nan"), "map": float("nan")}
    k = min(k, len(vectors) - 1)
    song_labels = labels.loc[vectors.index].to_numpy()
    x = vectors.to_numpy(np.float64)
    return {"precision_at_k": precision_at_k(x, song_labels, k), "map": mean_average_precision(x, song_labels)}


def benchmark_table(variants: Mapping[str, pd.DataFrame], baseline_vectors: Mapping[str, pd.DataFrame],
                    triplets: pd.DataFrame, n_resamples: int = 1000, seed: int = 0,
                    labels: pd.Series | None = None, k: int = 5) -> tuple[pd.DataFrame, int]:
    """Score every method on the triplets (and songs) that every method could analyse.

    Args:
        variants: variant name -> vectors indexed by track id.
        baseline_vectors: baseline name -> vectors indexed by track id (songs it skipped are absent).
        triplets: columns ``anchor``, ``positive``, ``negative`` (track ids).
        labels: track id -> label, for retrieval (precision@k, mAP) over the songs of the triplets.
        k: neighbours of precision@k.

    Returns:
        the table (:data:`TABLE_COLUMNS`, variants first, then baselines, each sorted by
        accuracy) and the number of triplets left out because a method lacked a song.
    """
    methods = {**{k: ("variant", v) for k, v in variants.items()}, **{k: ("baseline", v) for k, v in baseline_vectors.items()}}
    keep = np.ones(len(triplets), dtype=bool)
    for _, vectors in methods.values():
        for role in ROLES:
            keep &= triplets[role].isin(vectors.index).to_numpy()
    kept = triplets[keep]
    songs = sorted(set(kept.to_numpy().ravel()))
    rows = [{"method": name, "kind": kind, **score(vectors, kept, n_resamples, seed),
             **retrieval(vectors.loc[songs], labels, k)}
            for name, (kind, vectors) in methods.items()]
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.sort_values(["kind", "accuracy"], ascending=[False, False], kind="stable").reset_index(drop=True)
    return table, int((~keep).sum())


def markdown_table(table: pd.DataFrame) -> str:
    """The benchmark table as Markdown: accuracies with their 95 % CIs in percent, then retrieval."""
    lines = ["| method | kind | test triplets | 2-way accuracy | 95 % CI | odd-one-out accuracy | 95 % CI "
             "| precision@k | mAP |", "|---|---|---:|---:|---|---:|---|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| {row.method} | {row.kind} | {row.n_triplets} | {100 * row.accuracy:.1f} % "
                     f"| {100 * row.ci_low:.1f}-{100 * row.ci_high:.1f} % | {100 * row.odd_one_out:.1f} % "
                     f"| {100 * row.odd_one_out_ci_low:.1f}-{100 * row.odd_one_out_ci_high:.1f} % "
                     f"| {row.precision_at_k:.3f} | {row.map:.3f} |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def decode_robustness(models: Mapping[str, torch.nn.Module], paths: Mapping[str, str | Path], features) -> pd.DataFrame:
    """How close each variant's embeddings of songs decoded songfeel's way and MECOMP's way stay.

    Every song is decoded twice: :func:`songfeel.audio.load_audio` (channel mean,
    soxr) and :func:`songfeel.audio.load_audio_like_mecomp` ((L+R)·√2/2, cubic
    resampling), then featurised with :func:`songfeel.features.log_mel` and embedded whole.

    Returns:
        one row per variant: ``same_song_cosine`` (mean cosine similarity of a song's two
        decodings), ``other_song_cosine`` (mean cosine between different songs, songfeel
        decoding), ``retrieval_at_1`` (share of MECOMP-decoded songs whose nearest
        songfeel-decoded song is themselves) and ``n_songs``. Songs that fail to decode are logged and left out.
    """
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for track_id, path in tqdm(paths.items(), desc="decode both ways", unit="song"):
        try:
            ours = log_mel(load_audio(path, features.sample_rate), features)
            theirs = log_mel(load_audio_like_mecomp(path, features.sample_rate), features)
        except SongfeelError as exc:
            log.warning("decode robustness: skipped %s", exc)
            continue
        decoded[track_id] = (ours, theirs)
    rows = []
    for name, model in models.items():
        model.eval()
        ours = np.stack([model(torch.from_numpy(o)[None]).numpy()[0] for o, _ in decoded.values()])
        theirs = np.stack([model(torch.from_numpy(t)[None]).numpy()[0] for _, t in decoded.values()])
        cosine = theirs @ ours.T
        n = len(decoded)
        off_diagonal = ~np.eye(n, dtype=bool)
        rows.append({
            "variant": name,
            "same_song_cosine": float(np.mean(np.diag(cosine))),
            "other_song_cosine": float(np.mean((ours @ ours.T)[off_diagonal])) if n > 1 else float("nan"),
            "retrieval_at_1": float(np.mean(cosine.argmax(axis=1) == np.arange(n))),
            "n_songs": n,
        })
    return pd.DataFrame(rows)
