"""Peak picking tuned on validation songs: the grid, the choice, and how the choice reaches the methods."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_structure_config
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.infer import baseline_segmenters
from songfeel.segmentation.tuning import (
    NoveltyTrack,
    peak_grid,
    tune_peak_picking,
    tuned_markdown,
    with_tuned_peaks,
)

TIMES = np.arange(0.0, 60.0, 0.5)
NO_FINE = (np.zeros((1, 1)), np.zeros(1))


def bumps(centres, heights, width=1.0):
    return sum(h * np.exp(-0.5 * ((TIMES - c) / width) ** 2) for c, h in zip(centres, heights, strict=True))


def test_peak_grid_is_every_combination_and_rejects_unknown_keys():
    points = peak_grid({"threshold_ratio": [1.1, 2.0], "min_distance_seconds": [3.0, 5.0, 7.0]})
    assert len(points) == 6
    assert points[0] == {"threshold_ratio": 1.1, "min_distance_seconds": 3.0}
    assert points[-1] == {"threshold_ratio": 2.0, "min_distance_seconds": 7.0}
    with pytest.raises(ValueError, match="unknown peak-picking keys"):
        peak_grid({"kernel_seconds": [8.0]})
    with pytest.raises(ValueError, match="no value for"):
        peak_grid({"threshold_ratio": []})


def test_tuning_keeps_the_least_distance_that_drops_a_spurious_peak():
    """Boundaries at 10, 25 and 40 s; a second, lower peak 2 s after 25 s is a false alarm."""
    reference = Segmentation.from_boundaries([10.0, 25.0, 40.0], list("ABCA"), 60.0, "ref")
    novelty = bumps([10.0, 25.0, 27.0, 40.0], [1.0, 1.0, 0.7, 1.0], width=0.6)
    track = NoveltyTrack(novelty, TIMES, 60.0, *NO_FINE)
    base = {"curve": {"threshold_ratio": 1.0, "mean_window_seconds": 12.0, "min_distance_seconds": 3.0,
                      "refine": False, "local_radius_seconds": 0.0, "local_window_seconds": 1.0}}
    chosen, table = tune_peak_picking({"curve": [track, track]}, [reference, reference], base,
                                      {"min_distance_seconds": [1.0, 3.0, 5.0]})
    assert chosen["curve"]["min_distance_seconds"] == 3.0  # 5.0 scores the same; the earlier point wins a tie
    assert chosen["curve"]["threshold_ratio"] == 1.0 and chosen["curve"]["mean_window_seconds"] == 12.0
    scores = table.set_index("min_distance_seconds")
    assert scores.loc[1.0, "hr_0_5f_trim"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)  # 3 hits of 4 found
    assert scores.loc[3.0, "hr_0_5f_trim"] == pytest.approx(1.0)
    assert list(table["chosen"]) == [False, True, False]
    assert "| curve | 3.0 |" in tuned_markdown(chosen, ["min_distance_seconds"])
    with pytest.raises(ValueError, match="novelty curves for 2 songs"):
        tune_peak_picking({"curve": [track]}, [reference, reference], base, {"threshold_ratio": [1.0]})
    with pytest.raises(ValueError, match="no validation songs"):
        tune_peak_picking({"curve": []}, [], base, {"threshold_ratio": [1.0]})
    with pytest.raises(ValueError, match="peak picking needs refine"):
        tune_peak_picking({"curve": [track]}, [reference], {"curve": {k: v for k, v in base["curve"].items()
                                                                      if k != "refine"}}, {"threshold_ratio": [1.0]})


def test_tuned_settings_reach_each_foote_feature_on_its_own(demo_manifest):
    cfg = tiny_structure_config()
    rate = int(cfg.features.sample_rate)
    audio = load_audio(demo_manifest["path"].iloc[0], rate)
    plain = {name: segment(audio, rate).boundaries() for name, segment in baseline_segmenters(cfg).items()}
    assert len(plain["foote_mfcc"]) > 0
    silenced = {**dict(cfg.eval.foote), "threshold_ratio": 1e9}
    tuned = with_tuned_peaks(cfg, {"foote_mfcc": silenced, "ssmnet": {**dict(cfg.eval.ssmnet), "refine": False}})
    assert tuned["eval"]["ssmnet"]["refine"] is False
    assert tuned["eval"]["foote"]["by_feature"]["mfcc"]["threshold_ratio"] == 1e9
    after = {name: segment(audio, rate).boundaries() for name, segment in baseline_segmenters(tuned).items()}
    assert len(after["foote_mfcc"]) == 0  # no peak rises 1e9 times above its local mean
    np.testing.assert_allclose(after["foote_logmel"], plain["foote_logmel"])  # the other feature is untouched
    assert cfg.eval.foote.by_feature == {}  # the input config is not changed


def test_a_choice_read_back_from_tuning_csv_keeps_eval_footes_other_settings():
    """tuning.csv holds only the grid's keys: the others come from eval.foote, never from a code default."""
    cfg = OmegaConf.merge(tiny_structure_config(), {"eval": {"foote": {"mean_window_seconds": 20.0,
                                                                        "local_window_seconds": 2.0}}})
    tuned = with_tuned_peaks(cfg, {"foote_mfcc": {"threshold_ratio": 1.5, "refine": True}})
    mfcc = tuned["eval"]["foote"]["by_feature"]["mfcc"]
    assert (mfcc["threshold_ratio"], mfcc["refine"]) == (1.5, True)
    assert (mfcc["mean_window_seconds"], mfcc["local_window_seconds"]) == (20.0, 2.0)
    assert mfcc["min_distance_seconds"] == cfg.eval.foote.min_distance_seconds
