"""Benchmark: SSM-Net variants against Foote novelty and Laplacian segmentation, in one run, each with peak
picking tuned on the same validation medleys (issue 24's ablation).

    python benchmarks/segmentation_ablation.py --experiment soundtracks \
        --variant current=data/soundtracks/segmentation/ablation/current.pt \
        --variant teacher=data/soundtracks/segmentation/ablation/teacher.pt \
        --variant teacher_cepstral=data/soundtracks/segmentation/ablation/teacher_cepstral.pt \
        --reference current

Each ``--variant NAME=CHECKPOINT`` is an SSM-Net trained by ``04_train_segmentation.py`` (its own config is
in the checkpoint). The medleys and Foote's and Laplacian's settings are the experiment's
(``conf/experiment/<name>.yaml``).

1. Every validation medley is analysed once per variant, and once by Foote on each feature
   (:func:`songfeel.segmentation.tuning.novelty_tracks`).
2. Each method's peak picking is tuned on those curves over ``eval.tune.grid``
   (:func:`songfeel.segmentation.tuning.tune_peak_picking`: the best mean of trimmed HR.5F and HR3F).
3. On the validation medleys, with the chosen settings, each method's per-medley trimmed hit rates
   minus the ``--reference`` variant's, with a paired bootstrap 95 % CI over medleys: the ranking
   that picks a variant (never the test medleys).
   The reference variant's novelty fused with Foote's (:mod:`songfeel.segmentation.fusion`) joins as
   ``fusion_<weight>``, one method per weight of ``--fusion-weights`` (default ``eval.tune.fusion_weights``).
4. On the test medleys, every method with its chosen settings (:func:`songfeel.segmentation.scoring.
   evaluate_songs`: boundaries and labels, pairwise F and NCE), and each method minus Foote-MFCC and
   minus the reference, paired over medleys. Of the fused methods, only the weight with the best
   validation score is scored on test (as ``fusion``), labelled with SSM-Net's embeddings or Foote's
   frames, whichever gives the better pairwise F on the validation medleys.

Writes into ``--out`` (default ``results/<experiment>/segmentation/ablation``): ``ablation.md`` (the
tables), ``validation.csv`` and ``test.csv`` (per medley and method), ``tuning.csv`` (the grid).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel.audio import load_audio  # noqa: E402
from songfeel.segmentation.annotations import load_jams  # noqa: E402
from songfeel.segmentation.checkpoint import load_ssmnet  # noqa: E402
from songfeel.segmentation.config import feature_config, section  # noqa: E402
from songfeel.segmentation.dataset import medley_songs  # noqa: E402
from songfeel.segmentation.evaluation import score, trimmed_hit_rates  # noqa: E402
from songfeel.segmentation.infer import FUSION_LABELS, fusion_section, run_ssmnet, segment_pass  # noqa: E402
from songfeel.segmentation.peaks import detect_boundaries, peak_settings  # noqa: E402
from songfeel.segmentation.scoring import evaluate_songs, paired_differences, summarize  # noqa: E402
from songfeel.segmentation.tables import summary_markdown  # noqa: E402
from songfeel.segmentation.tuning import (  # noqa: E402
    fused_candidates,
    novelty_tracks,
    tune_peak_picking,
    with_tuned_peaks,
)

log = logging.getLogger("segmentation_ablation")

#: Scores compared medley by medley.
HIT_KEYS = ("hr_0_5f_trim", "hr_3f_trim")


def analyse_validation(models: dict, cfg, medleys: pd.DataFrame) -> tuple[dict, list]:
    """Novelty curves of every validation medley: each variant's SSM-Net, and Foote per feature (once)."""
    sample_rate = feature_config(cfg).sample_rate
    tracks: dict[str, list] = {}
    references = []
    options = section(cfg, "eval")
    options["fusion"] = {**options["fusion"], "weight": None}  # main() fuses each --fusion-weights itself
    for row in tqdm(medleys.itertuples(index=False), total=len(medleys), desc="validation medleys", unit="medley"):
        audio = load_audio(row.audio_path, sample_rate)
        references.append(load_jams(row.jams_path))
        for k, (name, (model, config)) in enumerate(models.items()):
            song = novelty_tracks(model, audio, sample_rate, {**config, "eval": options})
            tracks.setdefault(name, []).append(song.pop("ssmnet"))
            if k == 0:
                for method, track in song.items():
                    tracks.setdefault(method, []).append(track)
    return tracks, references


def hit_rates(tracks: dict, references: list, chosen: dict, medley_ids: list) -> pd.DataFrame:
    """Per medley and method, the trimmed hit rates with the method's chosen peak picking."""
    rows = []
    for method, method_tracks in tracks.items():
        settings = peak_settings(chosen[method])
        for medley_id, track, reference in zip(medley_ids, method_tracks, references, strict=True):
            boundaries = detect_boundaries(track.novelty, track.times, track.duration, track.fine_features,
                                           track.fine_starts, **settings)
            half, three = trimmed_hit_rates(reference, boundaries)
            rows.append({"method": method, "song_id": medley_id, "hr_0_5f_trim": half, "hr_3f_trim": three})
    return pd.DataFrame(rows)


def fusion_label_scores(model, config: dict, medleys: pd.DataFrame) -> pd.Series:
    """Mean pairwise F of the fused method on the validation medleys for each labeller of
    :data:`~songfeel.segmentation.infer.FUSION_LABELS` (the same boundaries, one SSM-Net pass per medley)."""
    sample_rate = feature_config(config).sample_rate
    scores = {labels: [] for labels in FUSION_LABELS}
    for row in tqdm(medleys.itertuples(index=False), total=len(medleys), desc="fusion labels", unit="medley"):
        song = run_ssmnet(model, load_audio(row.audio_path, sample_rate), sample_rate, config)
        reference = load_jams(row.jams_path)
        for labels in FUSION_LABELS:
            labelled = {**config, "eval": {**config["eval"], "fusion": {**config["eval"]["fusion"], "labels": labels}}}
            scores[labels].append(score(reference, segment_pass(song, labelled, "fusion")[0])["pairwise_f"])
    return pd.Series({labels: float(np.mean(values)) for labels, values in scores.items()})


def paired_table(per_song: pd.DataFrame, against: str, keys, n_resamples: int, seed: int) -> pd.DataFrame:
    """Every method minus ``against`` on the same medleys: mean difference and paired bootstrap 95 % CI.

    :func:`~songfeel.segmentation.scoring.paired_differences` gives ``against`` minus each method; the
    sign is turned (the mean, and the interval's ends swapped, exact for a percentile bootstrap).
    """
    table = paired_differences(per_song, against, n_resamples, seed, tuple(keys))
    turned = pd.DataFrame({"n_songs": table["n_songs"]}, index=table.index.rename("method"))
    for key in keys:
        turned[f"{key}_diff"] = -table[f"{key}_diff"]
        turned[f"{key}_diff_ci_low"] = -table[f"{key}_diff_ci_high"]
        turned[f"{key}_diff_ci_high"] = -table[f"{key}_diff_ci_low"]
    return turned


def paired_markdown(table: pd.DataFrame, against: str, keys) -> str:
    lines = [f"| method minus {against} | medleys | " + " | ".join(f"{k} [95 % CI]" for k in keys) + " |",
             "|" + "---|" * (2 + len(keys))]
    for method, row in table.iterrows():
        cells = [f"{row[f'{k}_diff']:+.3f} [{row[f'{k}_diff_ci_low']:+.3f}, {row[f'{k}_diff_ci_high']:+.3f}]"
                 for k in keys]
        lines.append(f"| {method} | {int(row['n_songs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="soundtracks")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--reference", required=True, help="the variant the others are compared with")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--fusion-weights", type=float, nargs="*", default=None,
                        help="SSM-Net shares to try for the reference variant's novelty fused with Foote's "
                             "(eval.fusion.feature; default: eval.tune.fusion_weights); validation picks one, "
                             "which alone is scored on test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="Estimated intervals are empty")
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        root = compose("config", overrides=[f"experiment={args.experiment}"])
    cfg = root.segmentation
    options = section(cfg, "eval")
    n_resamples, seed = int(options["bootstrap_resamples"]), int(options["seed"])
    models = {}
    for spec in args.variant:
        name, _, path = spec.partition("=")
        model, config = load_ssmnet(path)
        models[name] = (model, config)
        log.info("%s: %s, epoch %d, %d parameters", name, path, config["epoch"], model.n_parameters)
    if args.reference not in models:
        raise SystemExit(f"--reference {args.reference!r} is not one of the variants {list(models)}")
    out = args.out or REPO / "results" / args.experiment / "segmentation" / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(Path(cfg.paths.medleys) / "manifest.csv")
    validation = manifest[manifest["split"] == "validation"].reset_index(drop=True)
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)

    tracks, references = analyse_validation(models, cfg, validation)
    base = {name: options["ssmnet"] for name in models}
    base.update({method: options["foote"] for method in tracks if method.startswith("foote_")})
    feature = str(options["fusion"]["feature"])
    weights = list(options["tune"]["fusion_weights"]) if args.fusion_weights is None else args.fusion_weights
    candidates = fused_candidates(tracks[args.reference], tracks[f"foote_{feature}"], fusion_section(cfg), weights)
    for weight, (fused, settings) in candidates.items():
        tracks[f"fusion_{weight:.2f}"], base[f"fusion_{weight:.2f}"] = fused, settings
    grid = {key: list(values) for key, values in options["tune"]["grid"].items()}
    chosen, grid_table = tune_peak_picking(tracks, references, base, grid)
    grid_table.to_csv(out / "tuning.csv", index=False)
    val_scores = hit_rates(tracks, references, chosen, validation["medley_id"].astype(str).tolist())
    val_scores.to_csv(out / "validation.csv", index=False)
    val_paired = paired_table(val_scores, args.reference, HIT_KEYS, n_resamples, seed)

    per_song = []
    foote = {method: settings for method, settings in chosen.items() if method.startswith("foote_")}
    fusion, best = {}, None  # the fused method with the weight validation ranks best, scored on test as "fusion"
    if weights:
        best = max((method for method in chosen if method.startswith("fusion_")),
                   key=lambda method: val_scores[val_scores["method"] == method][list(HIT_KEYS)].mean().mean())
        fusion = {"fusion": {**chosen[best], "feature": feature}}
        log.info("fusion: validation picks %s (weight %.2f)", best, chosen[best]["weight"])
        model, config = models[args.reference]
        label_scores = fusion_label_scores(model, with_tuned_peaks({**config, "eval": options}, fusion), validation)
        fusion["fusion"]["labels"] = str(label_scores.idxmax())
        log.info("fusion: validation pairwise F by labeller %s", label_scores.round(3).to_dict())
    for k, (name, (model, config)) in enumerate(models.items()):
        reference = name == args.reference
        tuned = with_tuned_peaks({**config, "eval": options}, {"ssmnet": chosen[name], **foote,
                                                               **(fusion if reference else {})})
        if not reference:
            tuned["eval"]["fusion"] = {**tuned["eval"]["fusion"], "weight": None}
        scored, _, _ = evaluate_songs(model, medley_songs(test), tuned, progress=True, skip_errors=False)
        scored.loc[scored["method"] == "ssmnet", "method"] = name
        own = scored["method"].isin([name, "fusion"])
        per_song.append(scored if k == 0 else scored[own])
    per_song = pd.concat(per_song, ignore_index=True)
    per_song.to_csv(out / "test.csv", index=False)
    summary = summarize(per_song, n_resamples, seed)
    keys = (*HIT_KEYS, "pairwise_f")
    vs_foote = paired_table(per_song, "foote_mfcc", keys, n_resamples, seed)
    vs_reference = paired_table(per_song, args.reference, keys, n_resamples, seed)

    val_means = val_scores.groupby("method", sort=False)[list(HIT_KEYS)].mean()
    val_means["objective"] = val_means.mean(axis=1)
    lines = [f"# Segmentation ablation ({args.experiment})", "",
             f"{len(validation)} validation medleys tune every method's peak picking ({len(grid_table) // len(tracks)} "
             f"settings each) and rank the variants; {len(test)} test medleys score them once.", "",
             "Validation (trimmed hit rates with each method's tuned peak picking):", "",
             "| method | HR.5F | HR3F | mean |", "|---|---|---|---|"]
    lines += [f"| {method} | {row['hr_0_5f_trim']:.3f} | {row['hr_3f_trim']:.3f} | {row['objective']:.3f} |"
              for method, row in val_means.sort_values("objective", ascending=False).iterrows()]
    if best is not None:
        lines += ["", f"`fusion_<w>`: the novelty of {args.reference} (share w) fused with Foote's on {feature} "
                  f"(songfeel/segmentation/fusion.py). Validation picks {best}; only it is scored on test, as "
                  f"`fusion`, its segments labelled with {fusion['fusion']['labels']}'s features (validation pairwise F: "
                  + ", ".join(f"{name} {value:.3f}" for name, value in label_scores.items()) + ")."]
    lines += ["", "Validation, paired:", "", paired_markdown(val_paired, args.reference, HIT_KEYS),
              "Test:", "", summary_markdown(summary), "", "Test, paired against Foote-MFCC:", "",
              paired_markdown(vs_foote, "foote_mfcc", keys), "Test, paired against the reference:", "",
              paired_markdown(vs_reference, args.reference, keys), "Peak picking chosen on the validation medleys:", "",
              "| method | " + " | ".join(grid) + " |", "|" + "---|" * (1 + len(grid))]
    lines += [f"| {method} | " + " | ".join(str(settings[key]) for key in grid) + " |"
              for method, settings in chosen.items()]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    log.info("wrote %s", out / "ablation.md")



if __name__ == "__main__":
    main()
