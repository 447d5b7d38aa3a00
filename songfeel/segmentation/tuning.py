"""Peak picking chosen on the validation medleys, the same way for every novelty-based method.

SSM-Net and Foote both turn a novelty curve into boundaries, and how well they do
depends as much on the peak picking (how far above its local mean a peak must
rise, how close two boundaries may be, whether a boundary is moved to the sharpest
nearby change) as on the curve. Fixed settings chosen on one dataset favour one
method on another: on the full-length soundtrack medleys, a 7 s least distance
suits sections of 8-20 s and lifted Foote more than SSM-Net. So each method gets its
own best settings from the same grid, chosen on the validation medleys (never the
test ones) by the mean of trimmed HR.5F and HR3F (:func:`tune_peak_picking`).

Each validation song is analysed once (:func:`novelty_tracks`); the grid only
re-picks peaks, so tuning costs about one extra evaluation of the validation medleys.
Laplacian segmentation has no novelty curve and is not tuned.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import AudioError
from songfeel.segmentation.annotations import Segmentation, load_annotation
from songfeel.segmentation.baselines import foote_novelty
from songfeel.segmentation.config import feature_config, foote_feature_config, section
from songfeel.segmentation.evaluation import trimmed_hit_rates
from songfeel.segmentation.fusion import fuse_novelty
from songfeel.segmentation.infer import fusion_section, fusion_settings, run_ssmnet
from songfeel.segmentation.peaks import PEAK_KEYS, detect_boundaries, peak_settings

log = logging.getLogger(__name__)


class NoveltyTrack(NamedTuple):
    """One method's novelty curve of one song, with what peak picking and refinement need.

    Attributes:
        novelty: float64 (n_frames,) novelty curve.
        times: float64 (n_frames,) its frame times in seconds.
        duration: the song's length in seconds.
        fine_features: float32 (n_steps, n_mels) fine frames for local refinement.
        fine_starts: float64 (n_steps,) their start times in seconds.
    """

    novelty: np.ndarray
    times: np.ndarray
    duration: float
    fine_features: np.ndarray
    fine_starts: np.ndarray


#: What the fusion method's rows of a tuning table carry besides peak picking (``eval.fusion``).
FUSION_KEYS = ("weight", "feature", "labels")


def with_tuned_peaks(cfg, chosen: Mapping[str, Mapping]) -> dict:
    """A plain-dict copy of the ``structure`` config whose methods pick peaks as ``chosen`` says.

    ``chosen["ssmnet"]`` replaces ``eval.ssmnet``, ``chosen["fusion"]`` (with its :data:`FUSION_KEYS`)
    ``eval.fusion``; ``chosen["foote_<feature>"]`` goes to
    ``eval.foote.by_feature.<feature>``, which
    :func:`~songfeel.segmentation.infer.baseline_segmenters` lays over ``eval.foote``.

    Args:
        cfg: the ``structure`` config (dict or OmegaConf node).
        chosen: settings per method, from :func:`tune_peak_picking`.

    Returns:
        the updated config as nested dicts.
    """
    if isinstance(cfg, DictConfig):
        # Section by section: the config group alone cannot resolve ``paths``, which points into the root config.
        updated = {}
        for key in cfg:
            try:
                updated[key] = OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) \
                    else cfg[key]
            except InterpolationResolutionError:
                updated[key] = OmegaConf.to_container(cfg[key], resolve=False)
    else:
        updated = copy.deepcopy(dict(cfg))
    evaluation = updated["eval"]
    if "ssmnet" in chosen:
        evaluation["ssmnet"] = {**evaluation["ssmnet"], **chosen["ssmnet"]}
    if "fusion" in chosen:
        # A checkpoint from before the fusion method has no eval.fusion: infer.fusion_section fills the rest.
        evaluation["fusion"] = {**(evaluation.get("fusion") or {}), **chosen["fusion"]}
    by_feature = dict(evaluation["foote"].get("by_feature") or {})
    for method, settings in chosen.items():
        if method.startswith("foote_"):
            # A choice read back from tuning.csv holds only the grid's keys: the rest are eval.foote's.
            by_feature[method.removeprefix("foote_")] = peak_settings({**evaluation["foote"], **settings})
    evaluation["foote"] = {**evaluation["foote"], "by_feature": by_feature}
    return updated


def fuse_tracks(learned: NoveltyTrack, classic: NoveltyTrack, weight: float) -> NoveltyTrack:
    """``learned`` with its novelty fused with ``classic``'s (:func:`~songfeel.segmentation.fusion.fuse_novelty`,
    ``weight`` the learned share); frame times and fine frames stay ``learned``'s.

    Raises:
        ValueError: as :func:`~songfeel.segmentation.fusion.fuse_novelty`.
    """
    return learned._replace(novelty=fuse_novelty(learned.novelty, learned.times, classic.novelty, classic.times,
                                                 weight))


def fused_candidates(learned: Sequence[NoveltyTrack], classic: Sequence[NoveltyTrack], fusion: Mapping,
                     weights: Sequence[float]) -> dict[float, tuple[list[NoveltyTrack], dict]]:
    """Per weight, the songs' fused curves (:func:`fuse_tracks`) and that weight's settings for tuning.

    Args:
        learned: SSM-Net's curve per song.
        classic: Foote's curve per song, in the same order.
        fusion: the fusion section (:func:`~songfeel.segmentation.infer.fusion_section`).
        weights: SSM-Net's shares to try.

    Returns:
        ``{weight: (fused curves, fusion settings with that weight)}``.

    Raises:
        ValueError: the two lists differ in length, or as :func:`fuse_tracks`.
    """
    return {weight: ([fuse_tracks(a, b, weight) for a, b in zip(learned, classic, strict=True)],
                     {**fusion, "weight": weight}) for weight in weights}


def novelty_tracks(model, audio: np.ndarray, sample_rate: int, cfg) -> dict[str, NoveltyTrack]:
    """SSM-Net's and each Foote feature's novelty curve of one song (``ssmnet``, ``foote_<feature>``), and
    with ``eval.fusion`` switched on their fusion (``fusion``, :func:`~songfeel.segmentation.fusion.fuse_novelty`).

    Args:
        model: a trained :class:`~songfeel.segmentation.ssmnet.SSMNet` matching ``cfg.features``.
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio``.
        cfg: the ``structure`` config or a checkpoint's; reads ``features``, ``eval.foote`` and ``eval.fusion``.

    Returns:
        a :class:`NoveltyTrack` per novelty-based method.

    Raises:
        ValueError: the audio is not mono, is silent, holds NaN/Inf or is shorter than one patch.
    """
    options, rate = section(cfg, "eval"), feature_config(cfg).sample_rate
    song = run_ssmnet(model, audio, sample_rate, cfg)
    tracks = {"ssmnet": NoveltyTrack(song.out.novelty[0].cpu().numpy().astype(np.float64), song.times,
                                     song.duration, song.steps, song.starts)}
    foote, frames = options["foote"], foote_feature_config(cfg)
    for feature in foote["features"]:
        novelty, times, _ = foote_novelty(song.audio, rate, feature, float(foote["hop_seconds"]),
                                          float(foote["kernel_seconds"]), float(foote["kernel_sigma"]), frames)
        tracks[f"foote_{feature}"] = NoveltyTrack(novelty, times, song.duration, song.steps, song.starts)
    fusion = fusion_settings(cfg)
    if fusion is not None:
        tracks["fusion"] = fuse_tracks(tracks["ssmnet"], tracks[f"foote_{fusion['feature']}"], fusion["weight"])
    return tracks


def peak_grid(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, in order (the first value of each key varies slowest).

    Args:
        grid: lists of values per :data:`~songfeel.segmentation.peaks.PEAK_KEYS` key.

    Returns:
        one dict per combination.

    Raises:
        ValueError: a key is not a peak-picking key, or a list is empty.
    """
    unknown = sorted(set(grid) - set(PEAK_KEYS))
    if unknown:
        raise ValueError(f"unknown peak-picking keys {unknown} (known: {list(PEAK_KEYS)})")
    empty = sorted(key for key, values in grid.items() if len(values) == 0)
    if empty:
        raise ValueError(f"the tuning grid gives no value for {empty}")
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[key] for key in keys))]


def tune_peak_picking(tracks: Mapping[str, Sequence[NoveltyTrack]], references: Sequence[Segmentation],
                      base: Mapping[str, Mapping], grid: Mapping[str, Sequence]
                      ) -> tuple[dict[str, dict], pd.DataFrame]:
    """Each method's peak-picking settings that maximise mean(HR.5F, HR3F), trimmed, over the songs.

    Args:
        tracks: per method, one :class:`NoveltyTrack` per song, in the order of ``references``.
        references: the songs' annotations.
        base: per method, its configured peak-picking section; a key the grid lacks keeps this value.
        grid: lists of values to try per peak-picking key (:func:`peak_grid`).

    Returns:
        per method the chosen settings (``base`` updated with the best grid point;
        a tie goes to the earlier grid point), and a table with one row per method and
        grid point: the settings, ``hr_0_5f_trim``, ``hr_3f_trim``, ``objective`` and ``chosen``.

    Raises:
        ValueError: no songs, or a method's tracks do not match the references.
    """
    if not references:
        raise ValueError("no validation songs to tune peak picking on")
    points = peak_grid(grid)
    rows, chosen = [], {}
    for method, method_tracks in tracks.items():
        if len(method_tracks) != len(references):
            raise ValueError(f"{method}: {len(method_tracks)} novelty curves for {len(references)} songs")
        best, best_objective = None, -np.inf
        for point in points:
            settings = {**peak_settings(base[method]), **point}
            hits = np.array([trimmed_hit_rates(reference, detect_boundaries(
                track.novelty, track.times, track.duration, track.fine_features, track.fine_starts, **settings))
                for track, reference in zip(method_tracks, references, strict=True)])
            half, three = hits.mean(axis=0)
            objective = 0.5 * (half + three)
            rows.append({"method": method, **point, "hr_0_5f_trim": half, "hr_3f_trim": three,
                         "objective": objective, "chosen": False})
            if objective > best_objective + 1e-12:
                best, best_objective, best_row = settings, objective, len(rows) - 1
        rows[best_row]["chosen"] = True
        chosen[method] = {**dict(base[method]), **best}
        log.info("structure: %s peak picking tuned on %d songs: %s (HR.5F %.3f, HR3F %.3f)", method,
                 len(references), {key: best[key] for key in grid}, rows[best_row]["hr_0_5f_trim"],
                 rows[best_row]["hr_3f_trim"])
    return chosen, pd.DataFrame(rows)


def tune_on_songs(model, songs: pd.DataFrame, cfg, progress: bool = True) -> tuple[dict[str, dict], pd.DataFrame]:
    """Analyse annotated songs once and tune every novelty method's peak picking on them.

    Args:
        model: the trained SSM-Net.
        songs: rows with ``song_id, audio_path, annotation_path`` and an optional ``format``
            (the validation medleys: ``format`` ``jams``).
        cfg: the ``structure`` config; reads ``features``, ``eval.ssmnet``, ``eval.foote``, ``eval.fusion``,
            ``eval.tune.grid`` and ``eval.tune.fusion_weights``.
        progress: show a tqdm bar.

    Returns:
        the chosen settings per method (``ssmnet``, ``foote_<feature>``, and ``fusion``) and the grid
        table of :func:`tune_peak_picking`. ``fusion`` is SSM-Net's novelty fused with Foote's on
        ``eval.fusion.feature``, tuned at each of ``eval.tune.fusion_weights`` (or, when that list is
        empty, at ``eval.fusion.weight``; neither: no fusion); the weight that scores best is chosen
        with its peak picking, and the table's fusion rows carry their :data:`FUSION_KEYS`.

    Raises:
        ValueError: no song could be analysed (each is logged with its cause), a bad grid, or a
            fusion feature that is not one of ``eval.foote.features``.
    """
    options, sample_rate = section(cfg, "eval"), feature_config(cfg).sample_rate
    tracks: dict[str, list[NoveltyTrack]] = {}
    references = []
    formats = songs["format"] if "format" in songs.columns else pd.Series("auto", index=songs.index)
    for row, fmt in tqdm(zip(songs.itertuples(index=False), formats, strict=True), total=len(songs),
                         desc="tune peak picking", unit="song", disable=not progress):
        try:
            audio = load_audio(row.audio_path, sample_rate)
            reference = load_annotation(row.annotation_path, str(fmt), duration=len(audio) / sample_rate)
            song_tracks = novelty_tracks(model, audio, sample_rate, cfg)
        except (AudioError, ValueError) as exc:
            log.warning("structure: tuning skips %s: %s", row.song_id, exc)
            continue
        references.append(reference)
        song_tracks.pop("fusion", None)  # fused below, once per weight
        for method, track in song_tracks.items():
            tracks.setdefault(method, []).append(track)
    if not references:
        raise ValueError(f"none of the {len(songs)} validation songs could be analysed for tuning")
    base = {"ssmnet": options["ssmnet"]}
    base.update({method: options["foote"] for method in tracks if method.startswith("foote_")})
    fusion = fusion_section(cfg)
    weights = [float(w) for w in options["tune"].get("fusion_weights") or []]
    weights = weights or ([] if fusion.get("weight") is None else [float(fusion["weight"])])
    if weights and f"foote_{fusion['feature']}" not in tracks:
        raise ValueError(f"eval.fusion.feature {fusion['feature']!r} is not one of eval.foote.features")
    candidates = fused_candidates(tracks["ssmnet"], tracks.get(f"foote_{fusion['feature']}", []), fusion, weights)
    for weight, (fused, settings) in candidates.items():
        tracks[f"fusion@{weight:g}"], base[f"fusion@{weight:g}"] = fused, settings
    chosen, table = tune_peak_picking(tracks, references, base, dict(options["tune"]["grid"]))
    return _one_fusion(chosen, table)


def _one_fusion(chosen: dict[str, dict], table: pd.DataFrame) -> tuple[dict[str, dict], pd.DataFrame]:
    """Fold the per-weight fused methods (``fusion@<weight>``) of a tuning into one method, ``fusion``: the
    weight whose best peak picking scores highest (the first on a tie), its rows marked with :data:`FUSION_KEYS`."""
    candidates = [method for method in chosen if method.startswith("fusion@")]
    if not candidates:
        return chosen, table
    table = table.copy()
    objective = {method: float(table.loc[(table["method"] == method) & table["chosen"], "objective"].iloc[0])
                 for method in candidates}
    best = max(candidates, key=objective.__getitem__)
    table[list(FUSION_KEYS)] = None
    for method in candidates:
        rows = table["method"] == method
        table.loc[rows, list(FUSION_KEYS)] = [chosen[method][key] for key in FUSION_KEYS]
        table.loc[rows, "chosen"] = table.loc[rows, "chosen"] & (method == best)
        table.loc[rows, "method"] = "fusion"
    kept = {method: settings for method, settings in chosen.items() if method not in candidates}
    return {**kept, "fusion": chosen[best]}, table


def tuned_markdown(chosen: Mapping[str, Mapping], keys: Sequence[str]) -> str:
    """A Markdown table of the chosen peak-picking settings (``keys``), one row per method."""
    lines = ["", "Peak picking chosen on the validation medleys:", "",
             "| method | " + " | ".join(keys) + " |", "|" + "---|" * (1 + len(keys))]
    lines += [f"| {method} | " + " | ".join(str(settings[key]) for key in keys) + " |"
              for method, settings in chosen.items()]
    if "fusion" in chosen:
        fusion = chosen["fusion"]
        lines += ["", f"fusion: SSM-Net's novelty (share {fusion['weight']:g}) fused with Foote's on "
                      f"{fusion['feature']}, the weight chosen on the validation medleys too; segments labelled with "
                      f"{fusion.get('labels', 'ssmnet')}'s features."]
    return "\n".join(lines) + "\n"


def read_tuning(path) -> dict[str, dict]:
    """The chosen settings per method from a ``tuning.csv`` that stage 05 wrote (:func:`tune_peak_picking`).

    Args:
        path: the grid table, e.g. ``results/segmentation/tuning.csv``.

    Returns:
        per method, its chosen peak-picking settings (the table's
        :data:`~songfeel.segmentation.peaks.PEAK_KEYS` columns, and for ``fusion`` its
        :data:`FUSION_KEYS`), for :func:`with_tuned_peaks`.

    Raises:
        ValueError: the file is missing or unreadable, or lacks the ``method`` and
            ``chosen`` columns or a chosen row, or its fusion row lacks its weight or
            feature (the file is named).
    """
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the tuning table: {exc}") from exc
    if not {"method", "chosen"} <= set(table.columns):
        raise ValueError(f"{path}: not a tuning table (it needs the columns method and chosen)")
    chosen_rows = table[table["chosen"].astype(str).str.lower() == "true"]
    if chosen_rows.empty:
        raise ValueError(f"{path}: no chosen settings")
    keys = [key for key in PEAK_KEYS if key in table.columns]
    chosen = {}
    for row in chosen_rows.itertuples(index=False):
        settings = {}
        for key in keys:
            value = getattr(row, key)
            settings[key] = str(value).lower() == "true" if key == "refine" else float(value)
        if row.method == "fusion":
            weight, feature, labels = (getattr(row, key, None) for key in FUSION_KEYS)
            if pd.isna(weight) or pd.isna(feature):
                raise ValueError(f"{path}: the fusion row lacks its weight or feature")
            settings.update(weight=float(weight), feature=str(feature))
            if not pd.isna(labels):
                settings["labels"] = str(labels)
        chosen[str(row.method)] = settings
    return chosen


def validation_ranking(path) -> pd.Series:
    """Each method's best validation score from a ``tuning.csv`` of stage 05, best first.

    The score is the one tuning maximised: the mean of trimmed HR.5F and HR3F over the validation
    medleys with the method's chosen peak picking (:func:`tune_peak_picking`).

    Args:
        path: the grid table, e.g. ``results/segmentation/tuning.csv``.

    Returns:
        ``objective`` per method (index ``method``), sorted from best to worst.

    Raises:
        ValueError: as :func:`read_tuning`, or the table lacks the ``objective`` column.
    """
    read_tuning(path)  # the same checks and messages
    table = pd.read_csv(path)
    if "objective" not in table.columns:
        raise ValueError(f"{path}: not a tuning table (it needs the column objective)")
    chosen = table[table["chosen"].astype(str).str.lower() == "true"]
    return chosen.set_index("method")["objective"].astype(float).sort_values(ascending=False, kind="stable")


def ranking_markdown(path) -> str:
    """The validation ranking of :func:`validation_ranking` as Markdown, naming the method that
    ``python -m songfeel.segmentation.segment --tuning <path>`` segments with (the best that command can run)."""
    ranking = validation_ranking(path)
    runnable = ranking[ranking.index.isin(["ssmnet", "fusion"]) | ranking.index.str.startswith("foote_")]
    lines = ["", "Validation ranking (tuned mean of trimmed HR.5F and HR3F on the validation medleys):", "",
             "| method | validation score |", "|---|---|"]
    lines += [f"| {method} | {value:.3f} |" for method, value in ranking.items()]
    if len(runnable):
        lines += ["", (f"`python -m songfeel.segmentation.segment --tuning {path}` segments with "
                       f"**{runnable.index[0]}**, the best of these on validation.")]
    return "\n".join(lines) + "\n"
