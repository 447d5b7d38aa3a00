"""Stage 05: every trained variant and every baseline, measured side by side in one run.

Methods: each trained variant; ``random-init``, the best variant's architecture
with random weights (what training adds); ``mfcc`` (z-scored MFCC mean/std);
``bliss`` (bliss-rs's 23 features with its default distance, plain Euclidean)
and ``bliss-grouped`` (equal weight per feature group: tempo, timbre, loudness,
chroma, the weighting bliss-rs's README suggests through its Mahalanobis
distance); ``mecomp`` (MECOMP's current ONNX model, fetched where it
is missing); ``teacher`` (the distillation teacher, musicnn, as a whole-song embedder: the
song mean of its cached, z-scored per-patch outputs). Files written under ``results_dir``:

* ``scores.csv``: 2-way and odd-one-out triplet accuracy with cluster-bootstrap
  95 % CIs (resampled over anchor songs), per method, split (val, test) and
  triplet source (label, self, human); ``coverage.csv``: triplets per group;
* ``retrieval.csv``: label retrieval (precision@k, mAP) per method and split;
* ``benchmark.csv`` / ``benchmark.md``: the held-out table (test, label triplets);
* ``consistency.csv``: SDC and Vendi score per method and song, the run's test
  songs and a reference corpus of the other origin (human vs AI,
  :mod:`songfeel.corpora`), full length and matched to the first N segments;
* ``cost.csv``: × real time of embedding on one thread, parameters, sizes;
* ``decode_robustness.csv``, ``neighbours.csv``;
* ``baselines_skipped.csv`` (:data:`SKIPPED_BASELINE_COLUMNS`): the songs a baseline could not
  analyse, and the baselines that could not run on this machine at all (bliss on a CPU without
  AVX-512: its probe dies by SIGILL, see :mod:`songfeel.native`); those are "not measured on
  this machine" in the report's tables, never silently missing;
* ``metrics.json``: every figure above as one flat ``{"name": number}`` map
  (``dvc metrics show`` / ``dvc metrics diff``);
* ``report.md`` and ``plots/`` (:mod:`songfeel.report`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from songfeel import benchmark, corpora
from songfeel import manifest as manifest_io
from songfeel.audio import load_audio
from songfeel.baselines import bliss, mecomp, mfcc
from songfeel.embed import embed_excerpts
from songfeel.errors import SongfeelError
from songfeel.export import cost
from songfeel.features import FeatureConfig
from songfeel.metrics.consistency import consistency_metrics, similarity_matrix
from songfeel.models.embedder import AudioEmbedder, build_embedder, load_checkpoint
from songfeel.models.frontend import LogMelFrontend
from songfeel.native import NativeBaselineUnavailable
from songfeel.report.tables import neighbour_table
from songfeel.report.write import ReportInputs, write_report
from songfeel.store import FeatureStore
from songfeel.teacher.targets import teacher_cost, teacher_song_vectors

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"

#: Columns of ``baselines_skipped.csv``: ``scope`` is "track" for one file a baseline could not
#: analyse (``track_id, path`` name it) and "baseline" for a baseline that could not run on this
#: machine at all (``track_id, path`` empty; ``error`` says why, e.g. the instruction set it needs).
SKIPPED_BASELINE_COLUMNS = ("method", "scope", "track_id", "path", "error")


def _baseline_skipped(method: str, cause: str) -> pd.DataFrame:
    """The ``baselines_skipped.csv`` row of a baseline left out as a whole."""
    return pd.DataFrame([{"method": method, "scope": "baseline", "track_id": "", "path": "", "error": cause}],
                        columns=list(SKIPPED_BASELINE_COLUMNS))


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders (those holding a ``model.pt``), sorted by name.

    Raises:
        FileNotFoundError: no run folder holds a checkpoint.
    """
    runs = sorted(p.parent for p in Path(runs_dir).glob("*/model.pt"))
    if not runs:
        raise FileNotFoundError(f"{runs_dir}: no trained runs (model.pt) found; run stage 04")
    return runs


def segment_excerpts(store, track_id: str, segment_seconds: float) -> list[tuple[str, int, int]]:
    """Consecutive whole segments of ``segment_seconds`` of a track, in frames; the remainder is dropped."""
    length = store.config.seconds_to_frames(segment_seconds)
    n_segments = store.n_frames(track_id) // length
    return [(track_id, k * length, (k + 1) * length) for k in range(n_segments)]


def _consistency_row(embeddings: np.ndarray, matched_segments: int) -> dict:
    nan = {"sdc": math.nan, "vendi_score": math.nan, "vendi_per_segment": math.nan}
    full = consistency_metrics(embeddings) if len(embeddings) >= 2 else {"n_segments": len(embeddings), **nan}
    matched = consistency_metrics(embeddings[:matched_segments]) if len(embeddings) >= matched_segments else nan
    return {**full, **{f"matched_{k}": matched[k] for k in nan}}


def consistency_table(model, store, track_ids: Sequence[str], segment_seconds: float, batch_size: int,
                    matched_segments: int = 3) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per song, SDC and Vendi score of its segments, and its segment SSM.

    Args:
        store: a :class:`~songfeel.store.FeatureStore` or :class:`~songfeel.corpora.ArrayStore`.
        segment_seconds: segment length, seconds.
        matched_segments: the ``matched_*`` columns use only the first this many
            segments, so that songs of different lengths compare fairly.

    Returns:
        a frame with ``track_id, n_segments, sdc, vendi_score, vendi_per_segment`` and their
        ``matched_`` counterparts (NaN, logged, for a song with fewer than 2, resp.
        ``matched_segments``, segments), and track id -> SSM (songs of 2+ segments).
    """
    rows, ssms = [], {}
    for track_id in track_ids:
        segments = segment_excerpts(store, track_id, segment_seconds)
        if len(segments) < 2:
            log.warning("%s: %d segment(s) of %.1f s, consistency metrics are NaN", track_id, len(segments), segment_seconds)
        embeddings = embed_excerpts(model, store, segments, batch_size) if segments else np.zeros((0, 1))
        rows.append({"track_id": track_id, **_consistency_row(embeddings, matched_segments)})
        if len(segments) >= 2:
            ssms[track_id] = similarity_matrix(embeddings)
    return pd.DataFrame(rows), ssms


def _labels(tracks: pd.DataFrame, label_columns) -> pd.Series | None:
    if not label_columns:
        return None
    return pd.Series(manifest_io.label_key(tracks, list(label_columns)).to_numpy(), index=tracks["track_id"])


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))


def flat_metrics(scores: pd.DataFrame, retrieval: pd.DataFrame, consistency: pd.DataFrame, cost_table: pd.DataFrame,
                 robustness: pd.DataFrame, checkpoints: Mapping[str, dict], extra: Mapping[str, float]) -> dict:
    """Every figure as one flat ``{"group/.../name": number}`` map, NaN left out (JSON has no NaN).

    Keys: ``triplets/<split>/<source>/<method>/<accuracy|ci_low|ci_high|odd_one_out|...|n_triplets>``
    (and ``[ooo_]diff_vs_reference|[ooo_]diff_ci_low|[ooo_]diff_ci_high``: the paired difference
    in 2-way and odd-one-out accuracy to MECOMP's model),
    ``retrieval/<split>/<method>/<precision_at_k|map>``, ``consistency/<method>/<origin>/<median_sdc|...>``,
    ``cost/<method>/<x_real_time|ratio_vs_mecomp|n_parameters|onnx_bytes>``,
    ``robustness/<variant>/<...>``, ``checkpoint/<variant>/val_triplet_accuracy`` and ``extra``.
    """
    out: dict[str, float] = {}

    def put(key: str, value) -> None:
        if _finite(value):
            out[key] = int(value) if isinstance(value, (int, np.integer)) else float(value)

    for row in scores.to_dict(orient="records"):
        for name in ("accuracy", "ci_low", "ci_high", "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high",
                     "n_triplets", "diff_vs_reference", "diff_ci_low", "diff_ci_high",
                     "ooo_diff_vs_reference", "ooo_diff_ci_low", "ooo_diff_ci_high"):
            put(f"triplets/{row['split']}/{row['source']}/{row['method']}/{name}", row[name])
    for row in retrieval.to_dict(orient="records"):
        put(f"retrieval/{row['split']}/{row['method']}/precision_at_k", row["precision_at_k"])
        put(f"retrieval/{row['split']}/{row['method']}/map", row["map"])
        for name in ("precision_at_k_diff", "map_diff"):  # paired difference to MECOMP's model, NaN without it
            put(f"retrieval/{row['split']}/{row['method']}/{name}", row[name])
    if len(consistency):
        for (method, origin), part in consistency.groupby(["method", "origin"]):
            put(f"consistency/{method}/{origin}/n_songs", len(part))
            put(f"consistency/{method}/{origin}/n_single_segment", int(part["sdc"].isna().sum()))
            for column in ("sdc", "vendi_score", "vendi_per_segment", "matched_sdc", "matched_vendi_per_segment"):
                put(f"consistency/{method}/{origin}/median_{column}", part[column].median(skipna=True))
    for row in cost_table.to_dict(orient="records"):
        for name in ("x_real_time", "ratio_vs_mecomp", "n_parameters", "onnx_bytes"):
            put(f"cost/{row['method']}/{name}", row.get(name))
    for row in robustness.to_dict(orient="records"):
        for name in ("same_song_cosine", "other_song_cosine", "retrieval_at_1"):
            put(f"robustness/{row['variant']}/{name}", row[name])
    for variant, meta in checkpoints.items():
        put(f"checkpoint/{variant}/val_triplet_accuracy", meta.get("val_triplet_accuracy"))
    for key, value in extra.items():
        put(key, value)
    return dict(sorted(out.items()))


def _mfcc_method(store: FeatureStore, excerpts: Sequence, train_ids: Sequence[str]) -> benchmark.Method:
    scaler = mfcc.Standardiser().fit(mfcc.mfcc_statistics(store, train_ids))
    stats = np.stack([np.concatenate([f.mean(axis=0, dtype=np.float64), f.std(axis=0, dtype=np.float64)])
                      for f in (store.mfcc(t, a, b) for t, a, b in excerpts)])
    return benchmark.Method("mfcc", "baseline", dict(zip(excerpts, scaler.transform(stats))))


def _embedding_method(name: str, kind: str, model, store, excerpts: Sequence, batch_size: int) -> benchmark.Method:
    return benchmark.Method(name, kind, dict(zip(excerpts, embed_excerpts(model, store, excerpts, batch_size).astype(np.float64))))


@dataclass(frozen=True, eq=False)
class _Songs:
    """The songs of one evaluation that the feature store holds, their triplets and excerpts."""

    paths: dict[str, str]  # track id -> audio file (every song of the manifest)
    n_frames: dict[str, int]  # track id -> frames in the store
    by_split: dict[str, list[str]]  # evaluated split -> its track ids
    train_ids: list[str]
    triplets: pd.DataFrame  # the evaluated splits' triplets with their excerpts (benchmark.triplet_roles)
    excerpts: list[tuple[str, int, int]]  # every excerpt a model embeds: triplet roles and whole songs

    @property
    def evaluated(self) -> list[str]:
        return [t for ids in self.by_split.values() for t in ids]

    @property
    def test_ids(self) -> list[str]:
        return self.by_split.get("test", [])

    def test_paths(self, n: int | None = None) -> dict[str, str]:
        """Track id -> audio file of the first ``n`` test songs (all of them by default)."""
        return {t: self.paths[t] for t in self.test_ids[:n]}


def _songs(tracks: pd.DataFrame, triplet_table: pd.DataFrame, store: FeatureStore, splits: Sequence[str]) -> _Songs:
    n_frames = store.frame_counts()

    def stored(split: str) -> list[str]:
        return [t for t in tracks.loc[tracks["split"] == split, "track_id"] if t in n_frames]

    by_split = {s: stored(s) for s in splits}
    triplets = benchmark.triplet_roles(triplet_table[triplet_table["split"].isin(splits)], store)
    excerpts = sorted({e for role in ("anchor", "positive", "negative") for e in triplets[role]}
                      | {(t, 0, n_frames[t]) for ids in by_split.values() for t in ids})
    return _Songs(dict(zip(tracks["track_id"], tracks["path"])), n_frames, by_split, stored("train"), triplets,
                  excerpts)


def _load_runs(runs: Sequence[Path], features: FeatureConfig, seed: int) -> tuple[dict, dict, str, dict]:
    """The trained variants (name -> model), their checkpoints' metadata, the best variant (highest
    validation triplet accuracy) and every embedder: the variants and ``random-init``, the best
    variant's architecture with random weights drawn after ``torch.manual_seed(seed)``."""
    models, checkpoints = {}, {}
    for run in runs:
        model, meta = load_checkpoint(run / "model.pt")
        models[meta["variant"]] = model
        checkpoints[meta["variant"]] = meta
    best = max(sorted(checkpoints), key=lambda v: float(checkpoints[v]["val_triplet_accuracy"]))
    torch.manual_seed(seed)
    random_model = build_embedder(checkpoints[best]["config"], features).eval()
    return models, checkpoints, best, {**models, RANDOM_INIT: random_model}


#: Baseline methods, their ``baselines_skipped.csv`` frames and the baselines not measured (method -> cause).
_Baselines = tuple[list[benchmark.Method], list[pd.DataFrame], dict[str, str]]


def _bliss_methods(songs: _Songs, eval_cfg) -> _Baselines:
    """``bliss`` and ``bliss-grouped``, or neither where bliss cannot run on this machine."""
    try:
        vectors, failed = bliss.bliss_features(
            {t: songs.paths[t] for t in songs.evaluated}, n_jobs=eval_cfg.num_threads,
            cache_path=eval_cfg.get("bliss_cache"))
    except NativeBaselineUnavailable as exc:  # its probe or every worker died: left out, reported
        return [], [_baseline_skipped(exc.method, exc.cause)], dict.fromkeys(("bliss", "bliss-grouped"), exc.cause)
    return ([benchmark.whole_song_method("bliss", "baseline", vectors, songs.n_frames),
             benchmark.whole_song_method("bliss-grouped", "baseline", bliss.bliss_group_weighted_vectors(vectors),
                                         songs.n_frames)],
            [failed.assign(method="bliss", scope="track")], {})


def _teacher_methods(songs: _Songs, teacher_path: str | Path | None) -> _Baselines:
    if teacher_path is not None and Path(teacher_path).is_file():
        vectors = teacher_song_vectors(teacher_path, songs.evaluated, songs.train_ids)
        return [benchmark.whole_song_method("teacher", "baseline", vectors, songs.n_frames)], [], {}
    cause = f"no teacher targets at {teacher_path} (run 02_teacher_targets.py)"
    return [], [_baseline_skipped("teacher", cause)], {"teacher": cause}


def _mecomp_methods(songs: _Songs, mecomp_onnx: str | Path) -> _Baselines:
    vectors, failed = mecomp.mecomp_embeddings({t: songs.paths[t] for t in songs.evaluated}, mecomp_onnx)
    return ([benchmark.whole_song_method("mecomp", "baseline", vectors, songs.n_frames)],
            [failed.assign(method="mecomp", scope="track")], {})


def _methods(embedders: Mapping[str, torch.nn.Module], models: Mapping[str, torch.nn.Module], store: FeatureStore,
             songs: _Songs, eval_cfg, teacher_path: str | Path | None, mecomp_onnx: str | Path | None) -> _Baselines:
    """Every method to score: the embedders (variants, then random-init), then the baselines of
    ``eval.baselines`` (mecomp only with ``mecomp_onnx``); with what :data:`_Baselines` adds."""
    log.info("embedding %d excerpts with %d models", len(songs.excerpts), len(embedders))
    methods = [_embedding_method(name, "variant" if name in models else "baseline", model, store, songs.excerpts,
                                 eval_cfg.batch_size) for name, model in embedders.items()]
    if "mfcc" in eval_cfg.baselines:
        methods.append(_mfcc_method(store, songs.excerpts, songs.train_ids))
    measured = []
    if "bliss" in eval_cfg.baselines:
        measured.append(_bliss_methods(songs, eval_cfg))
    if "teacher" in eval_cfg.baselines:
        measured.append(_teacher_methods(songs, teacher_path))
    if mecomp_onnx is not None:
        measured.append(_mecomp_methods(songs, mecomp_onnx))
    skipped, not_measured = [], {}
    for more, frames, causes in measured:
        methods += more
        skipped += frames
        not_measured.update(causes)
    return methods, skipped, not_measured


def _cost_of_embedders(embedders: Mapping[str, torch.nn.Module], checkpoints: Mapping[str, dict], songs: _Songs,
                features: FeatureConfig, eval_cfg, mecomp_onnx: str | Path | None) -> pd.DataFrame:
    """:func:`_cost` of every embedder behind its in-graph front end (as
    songfeel.export.onnx.build_audio_model builds them), on the test songs."""
    audio_models = {name: AudioEmbedder(LogMelFrontend(FeatureConfig.from_mapping(checkpoints[name]["features"])
                                                        if name in checkpoints else features), model).eval()
                    for name, model in embedders.items()}
    return _cost(audio_models, songs.test_paths(), features, eval_cfg, mecomp_onnx)


def evaluate_runs(
    runs_dir: str | Path,
    store_path: str | Path,
    triplets_path: str | Path,
    manifest_path: str | Path,
    eval_cfg,
    results_dir: str | Path,
    label_columns=None,
    teacher_path: str | Path | None = None,
    mecomp_onnx: str | Path | None = None,
) -> dict:
    """Evaluate every run folder under ``runs_dir`` and every baseline, and write the results.

    Args:
        eval_cfg: the ``eval`` config group (``conf/eval/default.yaml``).
        results_dir: receives the files listed in the module docstring.
        label_columns: the manifest's label columns (the dataset's ``label_columns``), for
            retrieval, maps and consistency groups; None leaves label retrieval out.
        teacher_path: the teacher-target store, for the ``teacher`` baseline (the song mean of
            its z-scored per-patch outputs); missing, the teacher is "not measured".
        mecomp_onnx: MECOMP's model (:func:`songfeel.baselines.mecomp.find_mecomp_model`); None leaves it out.

    Returns:
        the flat metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError: no trained run, or a missing input file.
    """
    torch.set_num_threads(int(eval_cfg.num_threads))
    results_dir = _clear_plots(results_dir)
    tracks = manifest_io.read(manifest_path)
    triplet_table = pd.read_csv(triplets_path)
    labels = _labels(tracks, label_columns)
    seed, n_resamples = int(eval_cfg.get("seed", 0)), int(eval_cfg.bootstrap_resamples)
    runs = list_runs(runs_dir)
    mecomp_onnx = mecomp_onnx if "mecomp" in eval_cfg.baselines else None
    with FeatureStore(store_path) as store:
        features = store.config
        songs = _songs(tracks, triplet_table, store, list(eval_cfg.get("splits", ["val", "test"])))
        models, checkpoints, best, embedders = _load_runs(runs, features, seed)
        methods, skipped, not_measured = _methods(embedders, models, store, songs, eval_cfg, teacher_path,
                                                  mecomp_onnx)
        scores, coverage = benchmark.score_triplets(methods, songs.triplets, n_resamples, seed)
        retrieval = benchmark.retrieval_table(methods, songs.by_split, songs.n_frames, labels,
                                              int(eval_cfg.retrieval_k), n_resamples=n_resamples, seed=seed)
        consistency, example_ssms = _consistency(embedders, store, tracks, labels, eval_cfg, features)
        cost_table = _cost_of_embedders(embedders, checkpoints, songs, features, eval_cfg, mecomp_onnx)
        teacher_share = pd.DataFrame(columns=list(benchmark.TEACHER_SHARE_COLUMNS))
        if any(m.name == "teacher" for m in methods):
            cost_table = _with_teacher_cost(cost_table, teacher_path)
            teacher_share = _teacher_share(methods, songs.triplets, {"test": songs.test_ids}, songs.n_frames,
                                           labels, eval_cfg, seed)
        robustness = benchmark.decode_robustness(models, songs.test_paths(eval_cfg.robustness_songs), features)
        test_songs = {m.name: m.songs(songs.test_ids, songs.n_frames) for m in methods}
    skipped_table = _skipped_table(skipped)
    heldout = benchmark.heldout_table(scores, retrieval, not_measured=not_measured)
    left_out = _test_label_triplets_left_out(coverage)
    maps, neighbours = _maps_and_neighbours(test_songs, labels, best, eval_cfg)
    _write_csvs(results_dir, scores=scores, coverage=coverage, retrieval=retrieval, consistency=consistency,
                cost=cost_table, benchmark=heldout, baselines_skipped=skipped_table, decode_robustness=robustness,
                neighbours=neighbours, teacher_share=teacher_share)
    benchmark_text = _benchmark_markdown(heldout, len(songs.test_ids), left_out, eval_cfg.retrieval_k)
    (results_dir / "benchmark.md").write_text(benchmark_text)
    metrics = flat_metrics(scores, retrieval, consistency, cost_table, robustness, checkpoints,
                           _count_metrics(skipped_table, teacher_share, left_out, len(songs.test_ids)))
    (results_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_report(results_dir, ReportInputs(
        scores=scores, retrieval=retrieval, consistency=consistency, cost=cost_table,
        histories=[run / "history.csv" for run in runs], example_ssms=example_ssms, maps=maps,
        neighbours=neighbours, segment_seconds=float(eval_cfg.segment_seconds),
        matched_segments=int(eval_cfg.matched_segments), not_measured=not_measured,
        extra_sections=_extra_sections(benchmark_text, teacher_share, robustness, coverage)))
    for row in heldout.itertuples():
        log.info("test/label %-16s %.3f [%.3f, %.3f] on %d triplets", row.method, row.accuracy, row.ci_low,
                 row.ci_high, row.n_triplets)
    return metrics


def _clear_plots(results_dir: str | Path) -> Path:
    """``results_dir`` with an empty ``plots/`` folder: no plot of a method no longer evaluated stays."""
    results_dir = Path(results_dir)
    (results_dir / "plots").mkdir(parents=True, exist_ok=True)
    for stale in (results_dir / "plots").glob("*.png"):
        stale.unlink()
    return results_dir


def _skipped_table(skipped: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``baselines_skipped.csv``: the frames of :data:`_Baselines`, in :data:`SKIPPED_BASELINE_COLUMNS`."""
    return pd.concat([pd.DataFrame(columns=list(SKIPPED_BASELINE_COLUMNS)), *skipped],
                     ignore_index=True)[list(SKIPPED_BASELINE_COLUMNS)]


def _test_label_triplets_left_out(coverage: pd.DataFrame) -> int:
    """Test label triplets not scored because a method could not analyse one of their songs."""
    n_label = coverage[(coverage["split"] == "test") & (coverage["source"] == "label")]
    return int(n_label["n_triplets"].sum() - n_label["n_scored"].sum())


def _write_csvs(results_dir: Path, **tables: pd.DataFrame) -> None:
    """Each table as ``results_dir/<name>.csv``, without the index."""
    for name, frame in tables.items():
        frame.to_csv(results_dir / f"{name}.csv", index=False)


def _benchmark_markdown(heldout: pd.DataFrame, n_test_songs: int, left_out: int, retrieval_k) -> str:
    """``benchmark.md``: what the held-out table measures, then the table."""
    return (
        f"Test label triplets (whole songs), {n_test_songs} test songs; {left_out} triplets left out because "
        "a method could not analyse one of their songs. 95 % CI: cluster bootstrap over anchor songs. "
        f"Retrieval: every test song queries the others by label; precision@{retrieval_k}.\n\n"
        + benchmark.markdown_table(heldout))


def _count_metrics(skipped_table: pd.DataFrame, teacher_share: pd.DataFrame, left_out: int,
                   n_test_songs: int) -> dict[str, float]:
    """The ``extra`` of :func:`flat_metrics`: counts of songs and triplets left out, and the teacher shares."""
    return {
        "counts/test_label_triplets_left_out": left_out,
        "counts/songs_skipped_by_baselines": int((skipped_table["scope"] == "track").sum()),
        "counts/baselines_not_measured": len(skipped_table[skipped_table["scope"] == "baseline"]),
        "counts/test_songs": n_test_songs,
        **{f"teacher_share/{row.method}/{key}": float(getattr(row, key)) for row in teacher_share.itertuples()
           for key in ("share_of_teacher", "diff_vs_teacher", "precision_share_of_teacher")},
    }


def _extra_sections(benchmark_text: str, teacher_share: pd.DataFrame, robustness: pd.DataFrame,
                    coverage: pd.DataFrame) -> list[tuple[str, str]]:
    """The report's sections after its own: the held-out benchmark, the teacher shares, decode
    robustness and the triplets scored per group."""
    return [
        ("Held-out benchmark", benchmark_text),
        ("How much of the teacher each method keeps", benchmark.teacher_share_markdown(teacher_share)),
        ("Decoded as songfeel vs as MECOMP", robustness.to_markdown(index=False, floatfmt=".3f")),
        ("Triplets scored per group", coverage.to_markdown(index=False)),
    ]


def _teacher_share(methods: Sequence[benchmark.Method], triplets: pd.DataFrame,
                   songs_by_split: Mapping[str, Sequence[str]], n_frames: Mapping[str, int],
                   labels: pd.Series | None, eval_cfg, seed: int) -> pd.DataFrame:
    """:func:`songfeel.benchmark.teacher_share_table` of the test label triplets and test retrieval: every
    method compared with the teacher on the same triplets and queries (paired CIs)."""
    test = triplets[triplets["split"] == "test"]
    n_resamples = int(eval_cfg.bootstrap_resamples)
    scores, _ = benchmark.score_triplets(methods, test, n_resamples, seed, reference="teacher")
    retrieval = benchmark.retrieval_table(methods, songs_by_split, n_frames, labels, int(eval_cfg.retrieval_k),
                                          reference="teacher", n_resamples=n_resamples, seed=seed)
    return benchmark.teacher_share_table(scores, retrieval)


def _consistency(embedders: Mapping[str, torch.nn.Module], store: FeatureStore, tracks: pd.DataFrame,
               labels: pd.Series | None, eval_cfg, features: FeatureConfig):
    """Structure rows of every embedding model on the run's test songs and on a reference corpus
    of the other origin; and the SSM examples of the test songs."""
    test = tracks[(tracks["split"] == "test") & tracks["track_id"].isin(store.track_ids)]
    origins = {corpora.origin_of(s) for s in test["source"]}
    own_origin = origins.pop() if len(origins) == 1 else "human"
    other = "ai" if own_origin == "human" else "human"
    corpus_sets = [(store, list(test["track_id"]), f"{own_origin} test songs ({', '.join(sorted(set(test['source'])))})",
                    {t: corpora.origin_of(s) for t, s in zip(test["track_id"], test["source"])},
                    {t: (labels.get(t, "") if labels is not None else "") for t in test["track_id"]})]
    reference_cfg = eval_cfg.get("reference")
    if reference_cfg is not None and reference_cfg.get("enabled", True):
        try:
            reference = corpora.reference_corpus(other, features, reference_cfg)
        except (FileNotFoundError, SongfeelError) as exc:
            log.warning("no %s reference corpus: %s", other, exc)
        else:
            if reference.track_ids:
                corpus_sets.append((reference, reference.track_ids, reference.name,
                                    dict.fromkeys(reference.track_ids, reference.origin), reference.labels))
            else:
                log.warning("the %s reference corpus is empty: no human vs AI comparison", other)
    frames, examples = [], {}
    for name, model in embedders.items():
        for source, ids, corpus_name, origin, label in corpus_sets:
            rows, ssms = consistency_table(model, source, ids, eval_cfg.segment_seconds, eval_cfg.batch_size,
                                         int(eval_cfg.matched_segments))
            rows.insert(0, "method", name)
            rows.insert(2, "corpus", corpus_name)
            rows.insert(3, "origin", rows["track_id"].map(origin))
            rows.insert(4, "label", rows["track_id"].map(label).fillna(""))
            frames.append(rows)
            if source is store:
                examples[name] = {t: ssms[t] for t in sorted(ssms)[: eval_cfg.ssm_examples]}
    return pd.concat(frames, ignore_index=True), examples


def _cost(models: Mapping[str, torch.nn.Module], paths: Mapping[str, str], features: FeatureConfig, eval_cfg,
          mecomp_onnx: Path | None) -> pd.DataFrame:
    """× real time of every model on the first ``eval.cost_songs`` test songs, ``eval.cost_repeats``
    interleaved passes, one thread, same run."""
    audio = {}
    for track_id, path in list(paths.items())[: int(eval_cfg.cost_songs)]:
        try:
            audio[track_id] = load_audio(path, features.sample_rate)
        except SongfeelError as exc:
            log.warning("cost: skipped %s", exc)
    if not audio:
        log.warning("cost: no test song could be decoded; no cost table")
        return pd.DataFrame(columns=list(cost.COST_COLUMNS))
    kinds = {name: ("baseline" if name == RANDOM_INIT else "variant") for name in models}
    return cost.embedding_cost(models, audio, features.sample_rate, mecomp_onnx, kinds=kinds,
                               repeats=int(eval_cfg.cost_repeats), features=features)


def _with_teacher_cost(cost_table: pd.DataFrame, teacher_path: str | Path) -> pd.DataFrame:
    """The cost table with a ``teacher`` row: its parameters and the × real time per core that the teacher
    stage measured (TensorFlow never runs here, so not in this run: its ``ratio_vs_mecomp`` stays NaN)."""
    measured = teacher_cost(teacher_path)
    row = {"method": "teacher", "kind": "baseline", "n_parameters": measured["n_parameters"],
           "size_bytes_fp32": 4 * measured["n_parameters"], "onnx_bytes": math.nan, "audio_seconds": math.nan,
           "seconds": math.nan, "x_real_time": measured["x_real_time_per_core"], "ratio_vs_mecomp": math.nan}
    return pd.concat([cost_table, pd.DataFrame([row], columns=cost_table.columns)], ignore_index=True)


def _maps_and_neighbours(test_songs: Mapping[str, pd.DataFrame], labels: pd.Series | None, best: str, eval_cfg):
    """2-D maps of the test songs (the best variant, MECOMP, random-init) and the best variant's neighbours."""
    if labels is None:
        return {}, pd.DataFrame()
    maps = {name: (test_songs[name], labels.loc[test_songs[name].index]) for name in (best, "mecomp", RANDOM_INIT)
            if name in test_songs and len(test_songs[name]) >= 3}
    vectors = test_songs.get(best, pd.DataFrame())
    if len(vectors) < 2:
        return maps, pd.DataFrame()
    song_labels = labels.loc[vectors.index]
    queries = list(song_labels.groupby(song_labels, sort=True).head(1).index)[: int(eval_cfg.neighbour_queries)]
    neighbours = neighbour_table(vectors, song_labels, queries, k=min(int(eval_cfg.neighbour_k), len(vectors) - 1))
    neighbours.insert(0, "method", best)
    return maps, neighbours


__all__ = ["RANDOM_INIT", "SKIPPED_BASELINE_COLUMNS", "evaluate_runs", "flat_metrics", "list_runs", "segment_excerpts", "consistency_table"]
