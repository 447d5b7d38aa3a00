"""The segmentation stages (music structure analysis, G. Peeters, ISMIR 2023, arXiv 2309.02243), each a
function from the ``segmentation`` config section and its declared files to its declared outputs:

- :func:`build_medleys` (dvc stage ``medleys``, ``03_build_medleys.py``): medleys cut from the dataset
  manifest's songs, split by the manifest's own split, into ``segmentation.paths.medleys``;
- :func:`train_segmentation` (``train_segmentation``, ``04_train_segmentation.py``): SSM-Net on the train
  medleys, the epoch kept by validation, a checkpoint and its training curve;
- :func:`evaluate_segmentation` (``evaluate_segmentation``, ``05_evaluate_segmentation.py``): SSM-Net,
  Foote novelty and Laplacian segmentation on the same test medleys, scored with mir_eval, into
  ``results/segmentation/`` (``metrics.json`` keys ``segmentation/<method>/<score>``). With
  ``segmentation.annotated.songs`` set, the same methods are also scored on a user's annotated songs
  (:mod:`songfeel.segmentation.annotated`), under ``segmentation_annotated/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch

from songfeel import manifest as manifest_io
from songfeel.segmentation.annotated import evaluate_song_list
from songfeel.segmentation.checkpoint import load_ssmnet
from songfeel.segmentation.dataset import (
    build_medley_benchmark,
    load_medley_songs,
    medley_sampler,
    medley_songs,
)
from songfeel.segmentation.pretrain import TeacherSongs
from songfeel.segmentation.scoring import evaluate_medleys
from songfeel.segmentation.tables import comparison_report, summary_markdown
from songfeel.segmentation.training import train_ssmnet
from songfeel.segmentation.tuning import (
    ranking_markdown,
    tune_on_songs,
    tuned_markdown,
    validation_ranking,
    with_tuned_peaks,
)

log = logging.getLogger(__name__)

#: Medley split names of the benchmark (``segmentation.medleys.split_names`` maps the manifest's onto them).
TRAIN, VALIDATION, TEST = "train", "validation", "test"


def build_medleys(cfg, manifest_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the medley benchmark from scratch into ``cfg.paths.medleys``.

    Args:
        manifest_path: the dataset manifest of stage 01 (``data/manifest.csv``).
        cfg: the ``segmentation`` config.

    Returns:
        the medley manifest and the skipped source songs (also written there as
        ``manifest.csv`` and ``skipped.csv``).

    Raises:
        songfeel.errors.ManifestError: the manifest lacks ``path`` or ``split``.
        ValueError: a split asked for medleys has no songs.
    """
    out_dir = Path(cfg.paths.medleys)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # medleys of an earlier configuration
    medleys, skipped = build_medley_benchmark(manifest_io.read(manifest_path), out_dir, cfg)
    log.info("built %d medleys (%s) in %s; %d source songs skipped", len(medleys),
             medleys["split"].value_counts().to_dict(), out_dir, len(skipped))
    return medleys, skipped


def _medleys(cfg, split: str) -> pd.DataFrame:
    path = Path(cfg.paths.medleys) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no medley manifest (run 03_build_medleys.py)")
    table = pd.read_csv(path)
    return table[table["split"] == split].reset_index(drop=True)


def train_segmentation(cfg) -> pd.DataFrame:
    """Train SSM-Net on the train medleys, keep the best validation epoch, write its training curve.

    With ``cfg.train.fresh_medleys > 0``, every epoch also draws that many fresh medleys
    in memory from the train medleys' source songs (``<medleys>/train/sources.csv``,
    :func:`~songfeel.segmentation.dataset.medley_sampler`). With ``cfg.pretrain.epochs > 0`` the
    encoder is first pretrained on those whole songs with the teacher's targets (``cfg.paths.teacher``,
    :mod:`songfeel.segmentation.pretrain`).

    Args:
        cfg: the ``segmentation`` config (``train.num_threads`` torch threads).

    Returns:
        the per-epoch history (also written to ``cfg.paths.history``).

    Raises:
        FileNotFoundError: the medleys, their list of train source songs or (with pretraining) the teacher
            store are missing.
        ValueError: there are no train medleys.
    """
    torch.set_num_threads(int(cfg.train.num_threads))
    train = load_medley_songs(_medleys(cfg, TRAIN), cfg)
    if not train:
        raise ValueError(f"{cfg.paths.medleys}: no train medleys")
    validation = load_medley_songs(_medleys(cfg, VALIDATION), cfg)
    n_fresh = int(cfg.train.get("fresh_medleys") or 0)
    pretraining = int((cfg.get("pretrain") or {}).get("epochs") or 0) > 0
    sources = None  # the train songs: the fresh medleys' sources, and the pretraining's songs
    if n_fresh > 0 or pretraining:
        listed = Path(cfg.paths.medleys) / TRAIN / "sources.csv"
        if not listed.is_file():
            raise FileNotFoundError(f"{listed}: no list of train source songs (rebuild the medleys)")
        sources = medley_sampler(pd.read_csv(listed)["path"].tolist(), cfg)
    teacher = TeacherSongs(sources.audio, cfg.paths.teacher, list(cfg.pretrain.outputs)) if pretraining else None
    history = train_ssmnet(train, validation, cfg, cfg.paths.checkpoint, sampler=sources if n_fresh > 0 else None,
                           teacher=teacher)
    Path(cfg.paths.history).parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(cfg.paths.history, index=False)
    return history


def evaluate_segmentation(cfg) -> dict[str, float]:
    """Score SSM-Net and the baselines on the test medleys; write the per-song scores, summary and plots.

    With ``cfg.eval.tune.enabled``, each novelty method's peak picking is first chosen on the
    validation medleys (:mod:`songfeel.segmentation.tuning`; the grid goes to ``cfg.paths.tuning``).
    With ``cfg.annotated.songs`` (a song list, :func:`~songfeel.segmentation.annotated.read_song_list`),
    the annotated songs are scored too, into ``cfg.paths.annotated`` and ``plots/annotated``.

    Args:
        cfg: the ``segmentation`` config.

    Returns:
        flat metrics (``segmentation/<method>/<score>``), also written to ``cfg.paths.metrics``.

    Raises:
        FileNotFoundError: the medleys or the checkpoint are missing.
    """
    model, _ = load_ssmnet(cfg.paths.checkpoint)
    plots = Path(cfg.paths.plots)
    if plots.exists():
        shutil.rmtree(plots)
    scored, tuned_text, flat = cfg, "", {}
    if (cfg.eval.get("tune") or {}).get("enabled", False):
        chosen, grid = tune_on_songs(model, medley_songs(_medleys(cfg, VALIDATION)), cfg)
        Path(cfg.paths.tuning).parent.mkdir(parents=True, exist_ok=True)
        grid.to_csv(cfg.paths.tuning, index=False)
        scored = with_tuned_peaks(cfg, chosen)
        tuned_text = tuned_markdown(chosen, list(cfg.eval.tune.grid)) + ranking_markdown(cfg.paths.tuning)
        flat.update({f"segmentation/tuned/{method}/{key}": float(settings[key])
                     for method, settings in chosen.items() for key in cfg.eval.tune.grid})
        if "fusion" in chosen:
            flat["segmentation/tuned/fusion/weight"] = float(chosen["fusion"]["weight"])
        flat.update({f"segmentation/validation/{method}/objective": round(float(value), 6)
                     for method, value in validation_ranking(cfg.paths.tuning).items()})
    per_song, summary = evaluate_medleys(model, _medleys(cfg, TEST), scored, plot_dir=plots)
    for key in ("per_song", "summary", "paired"):
        Path(cfg.paths[key]).parent.mkdir(parents=True, exist_ok=True)
    per_song.to_csv(cfg.paths.per_song, index=False)
    summary.to_csv(cfg.paths.summary)
    differences, metrics, text = comparison_report(per_song, summary, scored)
    text += tuned_text
    differences.to_csv(cfg.paths.paired)
    flat.update({f"segmentation/{key}": value for key, value in metrics.items()})
    annotated = cfg.get("annotated") or {}
    if annotated.get("songs"):
        log.info("segmentation: scoring the annotated songs of %s", annotated["songs"])
        metrics, annotated_summary, skipped = evaluate_song_list(
            model, scored, annotated["songs"], cfg.paths.annotated, plot_dir=Path(cfg.paths.plots) / "annotated")
        flat.update({f"segmentation_annotated/{key}": value for key, value in metrics.items()})
        text += (f"\n\nAnnotated songs ({annotated['songs']}; {len(skipped)} skipped):\n\n"
                 + summary_markdown(annotated_summary))
    Path(cfg.paths.summary_markdown).write_text(text)
    Path(cfg.paths.metrics).write_text(json.dumps(flat, indent=1) + "\n")
    return flat
