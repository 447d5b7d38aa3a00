"""Scoring segmentations: SSM-Net and the baselines on the same annotated songs, with bootstrap CIs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import AudioError
from songfeel.metrics.bootstrap import bootstrap_ci
from songfeel.segmentation.annotations import Segmentation, load_annotation
from songfeel.segmentation.config import feature_config, section
from songfeel.segmentation.dataset import medley_songs
from songfeel.segmentation.evaluation import SCORE_KEYS, score
from songfeel.segmentation.infer import (
    baseline_segmenters,
    fusion_settings,
    run_ssmnet,
    segment_pass,
)
from songfeel.segmentation.ssmnet import (
    SSMNet,
)

log = logging.getLogger(__name__)

#: Columns of :func:`score_methods`'s table, before the :data:`~songfeel.segmentation.evaluation.SCORE_KEYS`.
PER_SONG_COLUMNS = ("method", "song_id", "n_boundaries_reference", "n_boundaries_estimate")


#: Scores whose mean gets a bootstrap 95 % confidence interval in :func:`summarize`.
CI_KEYS = ("hr_0_5f_trim", "hr_3f_trim", "hr_0_5f", "hr_3f")


def evaluate_medleys(model: SSMNet, test_medleys: pd.DataFrame, cfg, plot_dir: str | Path | None = None,
                       progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score SSM-Net and the baselines on the same test medleys (:func:`evaluate_songs` on their JAMS).

    Args:
        model: the trained SSM-Net.
        test_medleys: rows with ``medley_id, audio_path, jams_path``.
        cfg: the ``structure`` config; reads ``features`` and ``eval``.
        plot_dir: where to draw the plots; None draws none.
        progress: show a tqdm bar.

    Returns:
        the per-song table and the summary of :func:`evaluate_songs`.

    Raises:
        ValueError: no test medleys, or a JAMS file is unreadable.
        songfeel.errors.AudioError: a medley cannot be decoded.
    """
    if len(test_medleys) == 0:
        raise ValueError("no test medleys to evaluate")
    per_song, summary, _ = evaluate_songs(model, medley_songs(test_medleys), cfg, plot_dir, progress,
                                          skip_errors=False)
    return per_song, summary


#: Columns of the skipped-songs table of :func:`evaluate_songs`.
SKIPPED_SONG_COLUMNS = ("song_id", "audio_path", "annotation_path", "error")


def evaluate_songs(model: SSMNet, songs: pd.DataFrame, cfg, plot_dir: str | Path | None = None,
                   progress: bool = True, skip_errors: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score SSM-Net and the baselines on annotated songs: medleys, or a user's own (e.g. SALAMI, Harmonix).

    Every song is decoded once at ``cfg.features.sample_rate``; SSM-Net
    (:func:`segment_pass` of one :func:`run_ssmnet` pass; with ``eval.fusion`` switched on, also
    ``fusion``, its novelty fused with Foote's), Foote per feature and Laplacian segmentation
    (:func:`baseline_segmenters`) segment the same audio, and each estimate is scored
    against the song's annotation (:func:`score_methods`; the annotation's duration
    fixes the evaluated span). The first ``cfg.eval.n_plots`` songs are drawn into
    ``plot_dir`` (``<song_id>.png``) when it is given.

    Args:
        model: the trained SSM-Net.
        songs: rows with ``song_id, audio_path, annotation_path`` and an optional
            ``format`` (:func:`~songfeel.segmentation.annotations.load_annotation`; ``auto`` when absent).
        cfg: the ``structure`` config; reads ``features`` and ``eval``.
        plot_dir: where to draw the plots; None draws none.
        progress: show a tqdm bar.
        skip_errors: a song whose audio or annotation cannot be read, or whose audio is
            too short or silent, is logged and listed in the skipped table and the others
            are scored; with False the first such error is raised.

    Returns:
        the per-song table (:func:`score_methods`, plus ``seconds``: the time each method
        took on the song), the summary (:func:`summarize`) and the skipped songs
        (columns :data:`SKIPPED_SONG_COLUMNS`).

    Raises:
        ValueError: no songs, no song could be scored, or (``skip_errors=False``) an
            unreadable annotation or audio that SSM-Net cannot take.
        songfeel.errors.AudioError: (``skip_errors=False``) a song cannot be decoded.
    """
    from songfeel.segmentation.plots import plot_song  # matplotlib only when evaluating

    if len(songs) == 0:
        raise ValueError("no songs to evaluate")
    options = section(cfg, "eval")
    sample_rate = feature_config(cfg).sample_rate
    segmenters = baseline_segmenters(cfg)
    references: dict[str, Segmentation] = {}
    learned = ["ssmnet", *(["fusion"] if fusion_settings(cfg) is not None else [])]
    estimates: dict[str, dict[str, Segmentation]] = {name: {} for name in (*learned, *segmenters)}
    seconds: dict[str, dict[str, float]] = {name: {} for name in estimates}
    skipped, n_plotted = [], 0
    formats = songs["format"] if "format" in songs.columns else pd.Series("auto", index=songs.index)
    for row, fmt in tqdm(zip(songs.itertuples(index=False), formats, strict=True), total=len(songs),
                         desc="evaluate structure", unit="song", disable=not progress):
        song = str(row.song_id)
        try:
            audio = load_audio(row.audio_path, sample_rate)
            reference = load_annotation(row.annotation_path, str(fmt), duration=len(audio) / sample_rate)
            song_estimates = {}
            start = time.perf_counter()
            song_pass = run_ssmnet(model, audio, sample_rate, cfg)
            pass_seconds, song_seconds, details = time.perf_counter() - start, {}, {}
            for name in learned:  # both methods start from the one pass, and each is timed with it
                start = time.perf_counter()
                song_estimates[name], details[name] = segment_pass(song_pass, cfg, name)
                song_seconds[name] = pass_seconds + time.perf_counter() - start
            for name, segment in segmenters.items():
                start = time.perf_counter()
                song_estimates[name] = segment(audio, sample_rate)
                song_seconds[name] = time.perf_counter() - start
        except (AudioError, ValueError) as exc:
            if not skip_errors:
                raise
            log.warning("structure: skipping %s: %s", song, exc)
            skipped.append({"song_id": song, "audio_path": str(row.audio_path),
                            "annotation_path": str(row.annotation_path), "error": str(exc)})
            continue
        references[song] = reference
        for name in estimates:
            estimates[name][song], seconds[name][song] = song_estimates[name], song_seconds[name]
        if plot_dir is not None and n_plotted < int(options["n_plots"]):
            plot_song(details["ssmnet"], reference, Path(plot_dir) / f"{song}.png", title=song)
            n_plotted += 1
    skipped_table = pd.DataFrame(skipped, columns=list(SKIPPED_SONG_COLUMNS))
    if not references:
        raise ValueError(f"none of the {len(songs)} songs could be scored: "
                         + "; ".join(f"{r['song_id']}: {r['error']}" for r in skipped[:5]))
    per_song = score_methods(references, estimates)
    per_song["seconds"] = [seconds[m][s] for m, s in zip(per_song["method"], per_song["song_id"], strict=True)]
    summary = summarize(per_song, int(options["bootstrap_resamples"]), int(options["seed"]))
    return per_song, summary, skipped_table


def score_methods(references: Mapping[str, Segmentation],
                  estimates: Mapping[str, Mapping[str, Segmentation]]) -> pd.DataFrame:
    """Score every method's estimate of every reference song (:func:`~songfeel.segmentation.evaluation.score`).

    Args:
        references: annotation per song id.
        estimates: method name -> song id -> estimate; every method must cover every reference song.

    Returns:
        one row per method x song, methods in the given order and songs sorted: columns
        :data:`PER_SONG_COLUMNS` then :data:`~songfeel.segmentation.evaluation.SCORE_KEYS` (all in [0, 1]).

    Raises:
        KeyError: a method lacks an estimate for a reference song (method and songs named).
    """
    rows = []
    for method, method_estimates in estimates.items():
        missing = sorted(set(references) - set(method_estimates))
        if missing:
            raise KeyError(f"{method}: no estimate for {len(missing)} song(s): {missing[:10]}")
        for song in sorted(references):
            reference, estimate = references[song], method_estimates[song]
            rows.append({"method": method, "song_id": song, "n_boundaries_reference": len(reference.boundaries()),
                         "n_boundaries_estimate": len(estimate.boundaries()), **score(reference, estimate)})
    return pd.DataFrame(rows, columns=[*PER_SONG_COLUMNS, *SCORE_KEYS])


def summarize(per_song: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """Mean of each score per method, with bootstrap 95 % CIs over songs for :data:`CI_KEYS`.

    Every method resamples with the same seed, so methods scored on the same songs
    are resampled identically (paired).

    Args:
        per_song: a :func:`score_methods` table (an optional ``seconds`` column is averaged too).
        n_resamples: bootstrap resamples (0: no intervals, NaN).
        seed: the bootstrap seed.

    Returns:
        indexed by ``method`` (order of first appearance): ``n_songs``, the mean of every
        score column, and ``<key>_ci_low``, ``<key>_ci_high`` for each of :data:`CI_KEYS`.
    """
    value_columns = [c for c in (*SCORE_KEYS, "seconds") if c in per_song.columns]
    rows = {}
    for method, table in per_song.groupby("method", sort=False):
        table = table.sort_values("song_id")
        row = {"n_songs": int(table["song_id"].nunique()), **table[value_columns].mean().to_dict()}
        for key in CI_KEYS:
            _, row[f"{key}_ci_low"], row[f"{key}_ci_high"] = bootstrap_ci(table[key].to_numpy(), n_resamples, seed=seed)
        rows[method] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "method"
    return summary


#: Scores that :func:`paired_differences` compares song by song.
PAIRED_KEYS = ("hr_0_5f_trim", "hr_3f_trim", "pairwise_f")


def paired_differences(per_song: pd.DataFrame, method: str, n_resamples: int, seed: int,
                       keys: tuple[str, ...] = PAIRED_KEYS) -> pd.DataFrame:
    """``method`` minus every other method on the same songs, with paired bootstrap 95 % CIs.

    For each other method and each of ``keys`` (default :data:`PAIRED_KEYS`), the per-song differences
    ``score(method) - score(other)`` are averaged, and their percentile bootstrap
    interval resamples songs (:func:`songfeel.metrics.bootstrap.bootstrap_ci`): an interval above 0 means
    ``method`` is better on such songs, beyond the song-to-song noise that the
    per-method intervals of :func:`summarize` carry twice.

    Args:
        per_song: a :func:`score_methods` table holding ``method``.
        method: the method compared against the others.
        n_resamples: bootstrap resamples (0: no intervals, NaN).
        seed: the bootstrap seed.
        keys: the score columns compared.

    Returns:
        indexed by ``baseline`` (the other methods, in order of first appearance):
        ``n_songs`` and ``<key>_diff``, ``<key>_diff_ci_low``, ``<key>_diff_ci_high``.

    Raises:
        KeyError: ``method`` is not in ``per_song``, or a method lacks a song the other has.
    """
    if method not in set(per_song["method"]):
        raise KeyError(f"{method!r} is not among the scored methods {sorted(set(per_song['method']))}")
    tables = {name: table.set_index("song_id").sort_index() for name, table in per_song.groupby("method", sort=False)}
    mine = tables.pop(method)
    rows = {}
    for other, table in tables.items():
        if list(table.index) != list(mine.index):
            raise KeyError(f"{method} and {other} were not scored on the same songs")
        row = {"n_songs": len(table)}
        for key in keys:
            difference = (mine[key] - table[key]).to_numpy()
            _, low, high = bootstrap_ci(difference, n_resamples, seed=seed)
            row.update({f"{key}_diff": float(difference.mean()), f"{key}_diff_ci_low": low,
                        f"{key}_diff_ci_high": high})
        rows[other] = row
    differences = pd.DataFrame.from_dict(rows, orient="index")
    differences.index.name = "baseline"
    return differences


def paired_metrics(differences: pd.DataFrame, method: str = "ssmnet") -> dict[str, float]:
    """Flat metrics ``<method>_minus_<baseline>/<key>_diff[_ci_low|_ci_high]`` (NaN left out)."""
    return {f"{method}_minus_{baseline}/{column}": round(float(value), 6)
            for baseline, row in differences.iterrows() for column, value in row.items()
            if column != "n_songs" and not pd.isna(value)}


def segmentation_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Flat, JSON-serialisable metrics: method -> ``n_songs``, HR means and CIs, pairwise F, NCE F.

    Keys per method: ``n_songs``, each of :data:`CI_KEYS` with ``_ci_low``/``_ci_high``,
    ``pairwise_f``, ``nce_f`` (and ``seconds`` when present). NaN becomes None.
    """
    keys = ["n_songs", *(f"{k}{s}" for k in CI_KEYS for s in ("", "_ci_low", "_ci_high")), "pairwise_f", "nce_f",
            "seconds"]
    metrics = {}
    for method, row in summary.iterrows():
        values = {}
        for key in keys:
            if key not in row.index:
                continue
            value = row[key]
            if key == "n_songs":
                values[key] = int(value)
            else:
                values[key] = None if pd.isna(value) else round(float(value), 6)
        metrics[str(method)] = values
    return metrics
