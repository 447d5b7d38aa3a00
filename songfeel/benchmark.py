"""Scoring every method on the same triplets: per split and triplet source, with bootstrap CIs.

A :class:`Method` holds one vector per excerpt (the trained variants, the
random-init model and MFCC statistics embed any excerpt) or per whole song only
(bliss-rs's features and MECOMP's model analyse files). :func:`score_triplets`
gives, per (split, source) group, the 2-way accuracy d(anchor, positive) <
d(anchor, negative) (chance 1/2) and the odd-one-out accuracy, where
anchor-positive is the closest of the three pairs (chance 1/3), Euclidean, each
with a 95 % cluster-bootstrap confidence interval that resamples anchor songs
(triplets sharing an anchor are not independent). Within a group every method
counts the same triplets: a song that a baseline cannot analyse removes its
triplets for everyone. :func:`retrieval_table` adds label retrieval
(precision@k, mean average precision) over each split's whole songs.

The held-out benchmark of docs/experiments.md (:func:`heldout_table`) is the test split's
label triplets: on the soundtracks, anchor and positive come from one
soundtrack, the negative from another, all whole songs.

:func:`decode_robustness` checks that a variant's embedding of a song decoded
as songfeel decodes it (mean downmix, soxr) stays close to the embedding of the
same song decoded as MECOMP does ((L+R)·√2/2 downmix, cubic resampling).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from songfeel.audio import load_audio, load_audio_like_mecomp
from songfeel.embed import Excerpt, excerpt_frames
from songfeel.errors import SongfeelError
from songfeel.features import log_mel
from songfeel.metrics.bootstrap import bootstrap_ci
from songfeel.metrics.retrieval import per_query
from songfeel.metrics.triplet import odd_one_out_correct, triplet_correct
from songfeel.native import not_measured_note
from songfeel.triplets import ROLES

log = logging.getLogger(__name__)

#: An excerpt that starts at 0 s and ends at most this many seconds before the end of the song is
#: the whole song (durations from file headers and decoded frame counts differ slightly).
WHOLE_SONG_SLACK_SECONDS = 1.0

#: Columns of the per-split, per-source triplet scores.
SCORE_COLUMNS = ("method", "kind", "split", "source", "n_triplets", "accuracy", "ci_low", "ci_high",
                 "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high",
                 "diff_vs_reference", "diff_ci_low", "diff_ci_high",
                 "ooo_diff_vs_reference", "ooo_diff_ci_low", "ooo_diff_ci_high")

#: Columns of the benchmark table.
TABLE_COLUMNS = ("method", "kind", "n_triplets", "accuracy", "ci_low", "ci_high",
                 "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high",
                 "diff_vs_reference", "diff_ci_low", "diff_ci_high",
                 "ooo_diff_vs_reference", "ooo_diff_ci_low", "ooo_diff_ci_high", "precision_at_k", "map",
                 "precision_at_k_diff", "precision_at_k_diff_ci_low", "precision_at_k_diff_ci_high",
                 "map_diff", "map_diff_ci_low", "map_diff_ci_high", "note")

#: Columns of the retrieval table: per method and split, and the paired difference to the reference.
RETRIEVAL_COLUMNS = ("method", "kind", "split", "k", "n_songs", "precision_at_k", "map",
                     "precision_at_k_diff", "precision_at_k_diff_ci_low", "precision_at_k_diff_ci_high",
                     "map_diff", "map_diff_ci_low", "map_diff_ci_high")


def score_arrays(a: np.ndarray, p: np.ndarray, n: np.ndarray, clusters: np.ndarray, n_resamples: int,
                 seed: int) -> dict:
    """2-way and odd-one-out accuracy of (n_triplets, dim) anchor, positive and negative vectors,
    each with its cluster-bootstrap 95 % CI (``clusters``: the anchor of each triplet)."""
    mean, low, high = bootstrap_ci(triplet_correct(a, p, n), n_resamples=n_resamples, seed=seed, clusters=clusters)
    ooo, ooo_low, ooo_high = bootstrap_ci(odd_one_out_correct(a, p, n), n_resamples=n_resamples, seed=seed,
                                          clusters=clusters)
    return {"n_triplets": int(len(a)), "accuracy": mean, "ci_low": low, "ci_high": high,
            "odd_one_out": ooo, "odd_one_out_ci_low": ooo_low, "odd_one_out_ci_high": ooo_high}


@dataclass
class Method:
    """One method's vectors for scoring: per excerpt, or per whole song only.

    Attributes:
        name: e.g. ``"chunked-gru"``, ``"mfcc"``, ``"mecomp"``.
        kind: ``"variant"`` (a trained songfeel model) or ``"baseline"``.
        vectors: excerpt ``(track_id, start_frame, stop_frame)`` -> vector (dim,). A
            whole-song method holds only whole-song excerpts ``(track_id, 0, n_frames)``,
            so it cannot score triplets of shorter excerpts (the self-supervised ones).
    """

    name: str
    kind: str
    vectors: dict[Excerpt, np.ndarray]

    def songs(self, track_ids: Sequence[str], n_frames: Mapping[str, int]) -> pd.DataFrame:
        """Whole-song vectors of the given tracks that this method has: (n_songs, dim), indexed by track id."""
        keys = [(t, 0, n_frames[t]) for t in track_ids if (t, 0, n_frames[t]) in self.vectors]
        if not keys:
            return pd.DataFrame()
        return pd.DataFrame(np.stack([self.vectors[k] for k in keys]), index=[k[0] for k in keys])


def whole_song_method(name: str, kind: str, songs: pd.DataFrame, n_frames: Mapping[str, int]) -> Method:
    """A :class:`Method` from whole-song vectors indexed by track id (tracks absent from ``n_frames`` are dropped)."""
    vectors = {(t, 0, n_frames[t]): row for t, row in zip(songs.index, songs.to_numpy(np.float64)) if t in n_frames}
    return Method(name, kind, vectors)


def triplet_roles(table: pd.DataFrame, store) -> pd.DataFrame:
    """The triplets as excerpts in frames: columns ``split, source, anchor, positive, negative``.

    ``source`` is the triplet's ``kind`` (label, self, human); each role is an excerpt
    ``(track_id, start_frame, stop_frame)`` clipped to the stored frames. An excerpt from
    0 s to within :data:`WHOLE_SONG_SLACK_SECONDS` of the end is the whole song
    ``(track_id, 0, n_frames)``, which whole-song methods can score. Triplets with a
    track missing from the store are dropped and counted in the log.
    """
    present = np.ones(len(table), dtype=bool)
    for role in ROLES:
        present &= table[f"{role}_track"].map(lambda t: t in store).to_numpy(dtype=bool)
    if (~present).any():
        log.warning("%d triplets name tracks that are not in the feature store; left out", int((~present).sum()))
    kept = table[present]
    out = pd.DataFrame({"split": kept["split"].to_numpy(), "source": kept["kind"].to_numpy()})
    slack = int(np.ceil(WHOLE_SONG_SLACK_SECONDS * store.config.frame_rate))
    for role in ROLES:
        excerpts = [excerpt_frames(store, t, s, e) for t, s, e in zip(
            kept[f"{role}_track"], kept[f"{role}_start_s"], kept[f"{role}_end_s"])]
        whole = [(t, 0, store.n_frames(t)) if a == 0 and b >= store.n_frames(t) - slack else (t, a, b)
                 for t, a, b in excerpts]
        out[role] = whole
    return out


@dataclass(frozen=True)
class HeldoutSet:
    """A split's held-out test set, as the benchmarks that stand beside stage 05 read it.

    Attributes:
        tracks: the manifest; labels: its ``label_column`` by track id.
        n_frames: frames per stored track; test_ids, train_ids: the stored tracks of each split.
        triplets: the test split's label triplets as excerpts (:func:`triplet_roles`).
    """

    tracks: pd.DataFrame
    labels: pd.Series
    n_frames: dict
    test_ids: list
    train_ids: list
    triplets: pd.DataFrame

    def train_sample(self, n: int, seed: int = 0) -> list[str]:
        """A seeded sample of ``n`` training tracks (all of them when fewer), sorted."""
        rng = np.random.default_rng(seed)
        return sorted(rng.choice(self.train_ids, min(n, len(self.train_ids)), replace=False))


def heldout_set(data_dir: str | Path, features_path: str | Path, label_column: str = "album") -> HeldoutSet:
    """The test set of a split's ``data_dir`` (``manifest.csv``, ``triplets.csv``) over the feature store.

    Raises:
        FileNotFoundError: the manifest, triplets or store is missing.
    """
    from songfeel import manifest as manifest_io
    from songfeel.store import FeatureStore

    tracks = manifest_io.read(Path(data_dir) / "manifest.csv")
    table = pd.read_csv(Path(data_dir) / "triplets.csv")
    with FeatureStore(features_path) as store:
        n_frames = store.frame_counts()
        ids = {split: [t for t in tracks.loc[tracks["split"] == split, "track_id"] if t in n_frames]
               for split in ("test", "train")}
        triplets = triplet_roles(table[(table["split"] == "test") & (table["kind"] == "label")], store)
    return HeldoutSet(tracks, tracks.set_index("track_id")[label_column], n_frames, ids["test"], ids["train"], triplets)


def paired_difference(correct: np.ndarray, reference: np.ndarray, clusters: np.ndarray, n_resamples: int,
                      seed: int) -> tuple[float, float, float]:
    """Accuracy of one method minus a reference's on the same triplets, with a paired 95 % CI.

    Both methods answer the same triplets, so the per-triplet differences (-1, 0 or 1)
    are bootstrapped together over anchor clusters (:func:`bootstrap_ci`): the interval
    is much narrower than the two separate intervals suggest. An interval above 0 means
    the method beats the reference on these triplets.

    Args:
        correct, reference: (n_triplets,) 0/1 outcomes of the method and of the reference.
        clusters: (n_triplets,) the anchor of each triplet.

    Returns:
        ``(difference, low, high)`` in [-1, 1] (fractions of triplets, not percent).
    """
    difference = np.asarray(correct, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return bootstrap_ci(difference, n_resamples=n_resamples, seed=seed, clusters=clusters)


def score_triplets(methods: Sequence[Method], triplets: pd.DataFrame, n_resamples: int = 1000,
                   seed: int = 0, reference: str | None = "mecomp") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every method per split and triplet source on the same triplets.

    In each (split, source) group, a method takes part if it has vectors for every
    excerpt of at least one triplet; the group is scored on the triplets that every
    taking part method can score, so their rows count the same triplets. Whole-song
    methods (bliss, MECOMP) thus take part in label and human triplets, not in the
    self-supervised ones, whose excerpts are shorter than the song.

    Args:
        triplets: from :func:`triplet_roles`.
        reference: the method every other is compared with, where it takes part: the
            ``diff_*`` columns hold the 2-way accuracy difference and its paired 95 % CI
            (:func:`paired_difference`), the ``ooo_diff_*`` columns the same for odd-one-out
            accuracy; NaN elsewhere.

    Returns:
        ``(scores, coverage)``: scores has :data:`SCORE_COLUMNS`, one row per method,
        split and source; coverage has ``split, source, n_triplets, n_scored, methods``.
    """
    rows, coverage = [], []
    for (split, source), group in triplets.groupby(["split", "source"], sort=True):
        roles = list(zip(group["anchor"], group["positive"], group["negative"]))
        can = {m.name: np.array([all(e in m.vectors for e in t) for t in roles], dtype=bool) for m in methods}
        taking = [m for m in methods if can[m.name].any()]
        keep = np.logical_and.reduce([can[m.name] for m in taking]) if taking else np.zeros(len(roles), bool)
        kept = [t for t, k in zip(roles, keep) if k]
        coverage.append({"split": split, "source": source, "n_triplets": len(roles), "n_scored": len(kept),
                         "methods": ",".join(m.name for m in taking)})
        if not kept:
            log.warning("%s/%s: no triplet that every method can score", split, source)
            continue
        clusters = np.array([t[0][0] for t in kept])
        outcomes = {}
        for m in taking:
            a, p, n = (np.stack([m.vectors[t[i]] for t in kept]).astype(np.float64) for i in range(3))
            outcomes[m.name] = (triplet_correct(a, p, n), odd_one_out_correct(a, p, n))
            rows.append({"method": m.name, "kind": m.kind, "split": split, "source": source,
                         **score_arrays(a, p, n, clusters, n_resamples, seed)})
        for row in rows[len(rows) - len(taking):]:
            for i, prefix in enumerate(("", "ooo_")):
                if reference in outcomes and row["method"] != reference:
                    diff = paired_difference(outcomes[row["method"]][i], outcomes[reference][i], clusters,
                                             n_resamples, seed)
                else:
                    diff = (np.nan, np.nan, np.nan)
                row.update(zip((f"{prefix}diff_vs_reference", f"{prefix}diff_ci_low", f"{prefix}diff_ci_high"), diff))
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), pd.DataFrame(coverage)


def retrieval_table(methods: Sequence[Method], songs_by_split: Mapping[str, Sequence[str]],
                    n_frames: Mapping[str, int], labels: pd.Series | None, k: int, reference: str = "mecomp",
                    n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Label retrieval per method and split over the whole songs that every method has.

    Every method answers the same queries, so its precision@k and average precision are
    compared with ``reference``'s query by query: the mean difference and its percentile
    bootstrap 95 % CI over queries (:func:`songfeel.metrics.bootstrap.bootstrap_ci`; queries
    without a relevant song are left out of the mAP). An interval above 0 is a win.

    Returns:
        columns :data:`RETRIEVAL_COLUMNS`; the differences are NaN without the reference and for it.
    """
    rows = []
    for split, track_ids in songs_by_split.items():
        common = [t for t in track_ids if all((t, 0, n_frames[t]) in m.vectors for m in methods)]
        answers = {m.name: retrieval(m.songs(common, n_frames), labels, k) for m in methods}
        for m in methods:
            result = answers[m.name]
            row = {"method": m.name, "kind": m.kind, "split": split, "k": min(k, max(len(common) - 1, 0)),
                   "n_songs": len(common), "precision_at_k": result["precision_at_k"], "map": result["map"]}
            base = answers.get(reference) if m.name != reference else None  # no difference to itself
            for name, key in (("precision_at_k", "precision"), ("map", "average_precision")):
                diff = (np.nan, np.nan, np.nan)
                if base is not None and key in result and key in base:
                    difference = result[key] - base[key]
                    kept = ~np.isnan(difference)
                    if kept.any():
                        diff = bootstrap_ci(difference[kept], n_resamples=n_resamples, seed=seed)
                row.update(zip((f"{name}_diff", f"{name}_diff_ci_low", f"{name}_diff_ci_high"), diff))
            rows.append(row)
    return pd.DataFrame(rows, columns=list(RETRIEVAL_COLUMNS))


def retrieval(vectors: pd.DataFrame, labels: pd.Series | None, k: int) -> dict:
    """Precision@k and mAP of label retrieval among the songs of ``vectors`` (NaN without labels),
    with the per-query ``precision`` and ``average_precision`` (n_songs,) arrays when there are labels."""
    if labels is None or len(vectors) < 2:
        return {"precision_at_k": float("nan"), "map": float("nan")}
    k = min(k, len(vectors) - 1)
    song_labels = labels.loc[vectors.index].to_numpy()
    precision, average_precision = per_query(vectors.to_numpy(np.float64), song_labels, k)
    mean_ap = float("nan") if np.isnan(average_precision).all() else float(np.nanmean(average_precision))
    return {"precision_at_k": float(precision.mean()), "map": mean_ap,
            "precision": precision, "average_precision": average_precision}


def heldout_table(scores: pd.DataFrame, retrieval_rows: pd.DataFrame, split: str = "test",
                  source: str = "label", not_measured: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The held-out benchmark table (:data:`TABLE_COLUMNS`) of one split and triplet source:
    variants first, then baselines, each sorted by 2-way accuracy, with that split's retrieval.

    Each method of ``not_measured`` (method -> cause, e.g. a native baseline whose CPU
    lacks its instruction set) ends the table as a baseline row with NaN figures and the
    ``note`` "not measured on this machine: <cause>"; measured rows have an empty note.
    """
    part = scores[(scores["split"] == split) & (scores["source"] == source)].drop(columns=["split", "source"])
    found = retrieval_rows[retrieval_rows["split"] == split][["method", *RETRIEVAL_COLUMNS[5:]]]
    table = part.merge(found, on="method", how="left").reindex(columns=list(TABLE_COLUMNS))
    table["note"] = ""
    table = table.sort_values(["kind", "accuracy"], ascending=[False, False], kind="stable")
    missing = pd.DataFrame([{"method": method, "kind": "baseline", "note": not_measured_note(cause)}
                            for method, cause in (not_measured or {}).items() if method not in set(table["method"])],
                           columns=list(TABLE_COLUMNS))
    if len(missing):
        table = pd.concat([table, missing], ignore_index=True)
    return table.reset_index(drop=True)


def _paired(value: float, low: float, high: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}]"


def markdown_table(table: pd.DataFrame, reference: str = "mecomp") -> str:
    """The benchmark table as Markdown: accuracies with their 95 % CIs in percent, each with the
    paired difference to ``reference`` (percentage points, paired 95 % CI), then retrieval; a row
    with a ``note`` (a method not measured here) shows the note instead of figures."""
    lines = ["| method | kind | test triplets | 2-way accuracy | 95 % CI "
             f"| 2-way vs {reference}, paired 95 % CI | odd-one-out accuracy | 95 % CI "
             f"| odd-one-out vs {reference}, paired 95 % CI | precision@k | vs {reference}, paired 95 % CI "
             f"| mAP | vs {reference}, paired 95 % CI |",
             "|---|---|---:|---:|---|---|---:|---|---|---:|---|---:|---|"]
    for row in table.itertuples():
        if isinstance(getattr(row, "note", ""), str) and row.note:
            lines.append(f"| {row.method} | {row.kind} | - | {row.note} |" + " - |" * 9)
            continue
        lines.append(f"| {row.method} | {row.kind} | {row.n_triplets} | {100 * row.accuracy:.1f} % "
                     f"| {100 * row.ci_low:.1f}-{100 * row.ci_high:.1f} % "
                     f"| {_paired(row.diff_vs_reference, row.diff_ci_low, row.diff_ci_high)} "
                     f"| {100 * row.odd_one_out:.1f} % "
                     f"| {100 * row.odd_one_out_ci_low:.1f}-{100 * row.odd_one_out_ci_high:.1f} % "
                     f"| {_paired(row.ooo_diff_vs_reference, row.ooo_diff_ci_low, row.ooo_diff_ci_high)} "
                     f"| {row.precision_at_k:.3f} "
                     f"| {_paired(row.precision_at_k_diff, row.precision_at_k_diff_ci_low, row.precision_at_k_diff_ci_high)} "
                     f"| {row.map:.3f} | {_paired(row.map_diff, row.map_diff_ci_low, row.map_diff_ci_high)} |")
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


#: Columns of the table of how much of the teacher each method keeps (:func:`teacher_share_table`).
TEACHER_SHARE_COLUMNS = ("method", "kind", "n_triplets", "accuracy", "teacher_accuracy", "diff_vs_teacher",
                         "diff_ci_low", "diff_ci_high", "share_of_teacher", "precision_at_k",
                         "teacher_precision_at_k", "precision_at_k_diff", "precision_at_k_diff_ci_low",
                         "precision_at_k_diff_ci_high", "precision_share_of_teacher")


def teacher_share_table(scores: pd.DataFrame, retrieval_rows: pd.DataFrame, teacher: str = "teacher",
                        split: str = "test", source: str = "label") -> pd.DataFrame:
    """How much of the teacher every other method keeps, on one split's triplets and retrieval.

    ``scores`` and ``retrieval_rows`` must come from :func:`score_triplets` and
    :func:`retrieval_table` with ``reference=teacher``, so that the ``diff_*`` columns are
    paired differences to the teacher on the same triplets (cluster bootstrap over anchor
    songs) and queries. ``share_of_teacher`` is the method's lead over chance as a fraction
    of the teacher's, ``(accuracy - 1/2) / (teacher_accuracy - 1/2)`` for 2-way triplets
    (1 = all of the teacher, above 1 = better than it); ``precision_share_of_teacher`` is
    ``precision_at_k / teacher_precision_at_k``. Distillation's measure of success
    (Hinton et al., "Distilling the knowledge in a neural network", 2015, arXiv:1503.02531).

    Returns:
        columns :data:`TEACHER_SHARE_COLUMNS`, variants first, each kind sorted by accuracy;
        empty when the teacher was not scored on that split and source.
    """
    part = scores[(scores["split"] == split) & (scores["source"] == source)]
    if teacher not in set(part["method"]):
        return pd.DataFrame(columns=list(TEACHER_SHARE_COLUMNS))
    teacher_row = part[part["method"] == teacher].iloc[0]
    found = retrieval_rows[retrieval_rows["split"] == split].set_index("method")
    teacher_precision = float(found.loc[teacher, "precision_at_k"]) if teacher in found.index else float("nan")
    rows = []
    for row in part[part["method"] != teacher].itertuples():
        precision = found.loc[row.method] if row.method in found.index else None
        p_at_k = float(precision["precision_at_k"]) if precision is not None else float("nan")
        rows.append({
            "method": row.method, "kind": row.kind, "n_triplets": row.n_triplets, "accuracy": row.accuracy,
            "teacher_accuracy": teacher_row.accuracy, "diff_vs_teacher": row.diff_vs_reference,
            "diff_ci_low": row.diff_ci_low, "diff_ci_high": row.diff_ci_high,
            "share_of_teacher": (row.accuracy - 0.5) / (teacher_row.accuracy - 0.5)
            if teacher_row.accuracy > 0.5 else float("nan"),
            "precision_at_k": p_at_k, "teacher_precision_at_k": teacher_precision,
            **{key: (float(precision[key]) if precision is not None else float("nan"))
               for key in ("precision_at_k_diff", "precision_at_k_diff_ci_low", "precision_at_k_diff_ci_high")},
            "precision_share_of_teacher": p_at_k / teacher_precision if teacher_precision > 0 else float("nan"),
        })
    table = pd.DataFrame(rows, columns=list(TEACHER_SHARE_COLUMNS))
    return table.sort_values(["kind", "accuracy"], ascending=[False, False], kind="stable").reset_index(drop=True)


def teacher_share_markdown(table: pd.DataFrame) -> str:
    """:func:`teacher_share_table` as Markdown (percent and percentage points)."""
    if table.empty:
        return "The teacher was not scored in this run, so there is no share of it to report.\n"
    first = table.iloc[0]
    lines = [f"The teacher scores {100 * first.teacher_accuracy:.1f} % 2-way accuracy and precision@k "
             f"{first.teacher_precision_at_k:.3f} on these {first.n_triplets} test triplets. Share of the teacher: "
             "a method's lead over chance (50 %) as a fraction of the teacher's; precision@k as a fraction of the "
             "teacher's. Paired 95 % CIs: cluster bootstrap over anchor songs (triplets), bootstrap over queries "
             "(precision@k).", "",
             "| method | kind | 2-way accuracy | vs teacher, paired 95 % CI | share of the teacher kept "
             "| precision@k | vs teacher, paired 95 % CI | share of the teacher's precision@k |",
             "|---|---|---:|---|---:|---:|---|---:|"]
    for row in table.itertuples():
        lines.append(f"| {row.method} | {row.kind} | {100 * row.accuracy:.1f} % "
                     f"| {_paired(row.diff_vs_teacher, row.diff_ci_low, row.diff_ci_high)} "
                     f"| {100 * row.share_of_teacher:.0f} % | {row.precision_at_k:.3f} "
                     f"| {_paired(row.precision_at_k_diff, row.precision_at_k_diff_ci_low, row.precision_at_k_diff_ci_high)} "
                     f"| {100 * row.precision_share_of_teacher:.0f} % |")
    return "\n".join(lines) + "\n"
