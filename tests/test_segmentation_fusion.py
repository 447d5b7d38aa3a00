"""Late fusion of two novelty curves, on the curves of a real song spliced from three demo songs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import foote_settings

from songfeel.audio import load_audio
from songfeel.segmentation.baselines import foote_novelty
from songfeel.segmentation.fusion import fuse_novelty

SAMPLE_RATE = 22050
SPLICES = (10.0, 20.0)  # seconds: where one demo song gives way to the next


@pytest.fixture(scope="module")
def curves(demo_paths):
    """Foote's log-mel novelty every 0.25 s (standing in for SSM-Net's) and its MFCC novelty every 0.5 s."""
    audio = np.concatenate([load_audio(path, SAMPLE_RATE)[: 10 * SAMPLE_RATE] for path in demo_paths[3:6]])
    settings = foote_settings()
    out = {}
    for feature, hop in (("logmel", 0.25), ("mfcc", 0.5)):
        novelty, times, _ = foote_novelty(audio, SAMPLE_RATE, feature, hop, 6.0, settings["kernel_sigma"],
                                          settings["frames"])
        out[feature] = (novelty, times)
    return out


def test_the_weight_sets_each_curves_share_on_the_learned_times(curves):
    (learned, learned_times), (classic, classic_times) = curves["logmel"], curves["mfcc"]
    assert len(learned) > len(classic)  # two different frame rates
    only_learned = fuse_novelty(learned, learned_times, classic, classic_times, 1.0)
    only_classic = fuse_novelty(learned, learned_times, classic, classic_times, 0.0)
    np.testing.assert_allclose(only_learned, learned / learned.max())
    np.testing.assert_allclose(only_classic, np.interp(learned_times, classic_times, classic / classic.max()))
    half = fuse_novelty(learned, learned_times, classic, classic_times, 0.5)
    np.testing.assert_allclose(half, 0.5 * (only_learned + only_classic))
    assert half.shape == learned.shape and 0.0 <= half.min() and half.max() <= 1.0
    # A curve 100 times larger keeps the same share: each is scaled to its own peak first.
    np.testing.assert_allclose(fuse_novelty(100 * learned, learned_times, classic, classic_times, 0.5), half)


def test_the_fused_curve_peaks_at_the_splices_that_both_curves_see(curves):
    (learned, learned_times), (classic, classic_times) = curves["logmel"], curves["mfcc"]
    fused = fuse_novelty(learned, learned_times, classic, classic_times, 0.5)
    inner = (learned_times > 3.0) & (learned_times < 27.0)  # the kernel's half-width from the ends
    top = learned_times[inner][np.argmax(fused[inner])]
    assert min(abs(top - splice) for splice in SPLICES) < 1.5


def test_a_flat_zero_curve_adds_nothing_and_bad_input_is_refused(curves):
    (learned, learned_times), (classic, classic_times) = curves["logmel"], curves["mfcc"]
    fused = fuse_novelty(np.zeros_like(learned), learned_times, classic, classic_times, 0.5)
    np.testing.assert_allclose(fused, 0.5 * np.interp(learned_times, classic_times, classic / classic.max()))
    with pytest.raises(ValueError, match=r"weight must lie in \[0, 1\], got 1.5"):
        fuse_novelty(learned, learned_times, classic, classic_times, 1.5)
    broken = learned.copy()
    broken[3] = np.nan
    with pytest.raises(ValueError, match="learned novelty holds NaN or Inf"):
        fuse_novelty(broken, learned_times, classic, classic_times, 0.5)
    with pytest.raises(ValueError, match="classic novelty .* must be the same"):
        fuse_novelty(learned, learned_times, classic[:-1], classic_times, 0.5)
    with pytest.raises(ValueError, match="must be the same, non-empty"):
        fuse_novelty(learned[:0], learned_times[:0], classic, classic_times, 0.5)
