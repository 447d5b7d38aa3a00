"""Plots of a real song segmented by a (seeded, untrained) SSM-Net."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

from songfeel.audio import load_audio
from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.config import feature_config, model_config
from songfeel.segmentation.infer import segment_audio
from songfeel.segmentation.plots import DPI, plot_song
from songfeel.segmentation.ssmnet import SSMNet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def segmented(demo_paths):
    """Two real demo songs spliced at 12 s, segmented by a small seeded SSM-Net: (details, reference)."""
    cfg = OmegaConf.merge(OmegaConf.load(REPO / "conf/segmentation/default.yaml"),
                          {"model": {"channels": [4, 8], "embedding_dim": 16, "n_layers": 1, "n_heads": 2,
                                     "ff_dim": 16}})
    rate = feature_config(cfg).sample_rate
    first, second = (load_audio(path, rate)[: 12 * rate] for path in demo_paths[:2])
    audio = np.concatenate([first, second])
    torch.manual_seed(0)
    _, details = segment_audio(SSMNet(model_config(cfg)), audio, rate, cfg)
    reference = Segmentation.from_boundaries([12.0], ["A", "B"], len(audio) / rate, "splice")
    return details, reference


def test_plot_song_writes_a_png_with_and_without_reference(segmented, tmp_path):
    details, reference = segmented
    both = plot_song(details, reference, tmp_path / "nested" / "both.png", title="splice")
    alone = plot_song(details, None, tmp_path / "alone.png")
    assert both == tmp_path / "nested" / "both.png"
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with_reference, without = matplotlib.image.imread(both), matplotlib.image.imread(alone)
    # The ground-truth SSM adds a panel: a wider figure of the same height.
    assert with_reference.shape[0] == without.shape[0] and with_reference.shape[1] > without.shape[1] * 1.5
    assert with_reference.shape[0] == pytest.approx(6.8 * DPI, abs=2)
    # Not a blank canvas: the SSM and curves put many distinct colours on it.
    assert len(np.unique(with_reference.reshape(-1, with_reference.shape[-1]), axis=0)) > 50


def test_plot_song_rejects_inconsistent_details(segmented, tmp_path):
    details, reference = segmented
    with pytest.raises(ValueError, match="details disagree"):
        plot_song(replace(details, novelty=details.novelty[:-1]), reference, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
