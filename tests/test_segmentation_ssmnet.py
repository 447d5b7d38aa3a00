import math

import numpy as np
import pytest
import scipy.fft
import torch
from conftest import (
    PAPER_SSMNET,
    ssmnet_config,
    ssmnet_train_config,
    structure_feature_config,
)
from scipy.signal import find_peaks

from songfeel.audio import load_audio
from songfeel.segmentation.features import (
    patch_times,
    patches,
    structure_features,
)
from songfeel.segmentation.ssmnet import (
    SSMNet,
    SSMNetConfig,
    SSMNetTrainConfig,
    cepstral_similarity,
    checkerboard,
    collate_songs,
    dct_matrix,
    novelty_loss,
    self_similarity,
    ssm_loss,
    total_loss,
)
from songfeel.segmentation.training import fit_songs

torch.set_num_threads(1)

#: These tests' numbers are written for the paper's SSM-Net (40-step patches, 20 s kernels): conf with those.
PAPER = ssmnet_config(PAPER_SSMNET["features"], **PAPER_SSMNET["model"])
#: Its front end.
PAPER_FEATURES = structure_feature_config(**PAPER_SSMNET["features"])
#: A tiny network for the quick tests (the paper's is exercised by the training test).
TINY = ssmnet_config(PAPER_SSMNET["features"], **PAPER_SSMNET["model"], channels=[4, 8], embedding_dim=16,
                     n_layers=1, n_heads=2, ff_dim=16)


def targets_from_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth SSM (same label) and novelty (label changes smoothed by [.25 .5 1 .5 .25])."""
    ssm = (labels[:, None] == labels[None, :]).astype(np.float32)
    impulses = np.zeros(len(labels))
    impulses[np.flatnonzero(np.diff(labels)) + 1] = 1.0
    novelty = np.clip(np.convolve(impulses, [0.25, 0.5, 1.0, 0.5, 0.25], mode="same"), 0, 1)
    return ssm, novelty.astype(np.float32)


# --- checkerboard kernel ------------------------------------------------------------------------


def test_checkerboard_signs_taper_and_sums():
    size, sigma = 11, 3.0
    kernel = checkerboard(size, sigma).double()
    half = size // 2
    assert kernel.shape == (size, size)
    assert (kernel[:half, :half] > 0).all() and (kernel[half + 1 :, half + 1 :] > 0).all()
    assert (kernel[:half, half + 1 :] < 0).all() and (kernel[half + 1 :, :half] < 0).all()
    assert (kernel[half] == 0).all() and (kernel[:, half] == 0).all()
    # Flipping either axis swaps the within- and cross-segment quadrants.
    torch.testing.assert_close(kernel.flip(0), -kernel)
    torch.testing.assert_close(kernel.flip(1), -kernel)
    torch.testing.assert_close(kernel, kernel.T)
    assert kernel.sum().item() == pytest.approx(0.0, abs=1e-7)
    assert kernel.abs().sum().item() == pytest.approx(1.0, abs=1e-6)
    for m, n in ((1, 1), (2, 3), (-4, 5), (5, -5)):
        ratio = kernel[half + m, half + n] / kernel[half + 1, half + 1]
        assert abs(ratio.item()) == pytest.approx(math.exp(-(m * m + n * n - 2) / (2 * sigma**2)), rel=1e-5)


def test_checkerboard_rejects_even_sizes_and_bad_sigma():
    with pytest.raises(ValueError, match="odd"):
        checkerboard(10, 3.0)
    with pytest.raises(ValueError, match="sigma"):
        checkerboard(11, 0.0)


def test_the_papers_kernels_are_about_20_seconds_wide():
    cfg = PAPER
    width_seconds = (2 * cfg.kernel_half_patches + 1) * cfg.patch_hop_seconds
    assert width_seconds == pytest.approx(20.0, abs=1.0)
    assert SSMNet(cfg).kernels.shape == (3, 2 * cfg.kernel_half_patches + 1, 2 * cfg.kernel_half_patches + 1)
    assert SSMNet(cfg).n_parameters == 146_594  # the module docstring's count


def test_the_configs_come_from_conf_and_name_what_is_missing():
    model, train = ssmnet_config(), ssmnet_train_config()
    # conf/segmentation/default.yaml, not the paper: 20-step patches, 12 s kernels tapered by 3 s.
    assert (model.patch_steps, model.kernel_seconds, model.kernel_sigma_seconds) == (20, 12.0, 3.0)
    assert model.channels == (16, 32, 32, 64) and (train.alpha, train.learning_rate) == (0.5, 1e-3)
    values = model.to_dict()
    del values["kernel_seconds"]
    with pytest.raises(ValueError, match="SSMNetConfig needs kernel_seconds"):
        SSMNetConfig.from_mapping(values)
    with pytest.raises(ValueError, match="SSMNetTrainConfig needs alpha, learning_rate, weight_decay"):
        SSMNetTrainConfig.from_mapping({"batch_size": 1})


# --- SSM and novelty ----------------------------------------------------------------------------


def test_self_similarity_is_in_unit_interval_with_ones_on_the_diagonal():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(2, 17, 8), dim=-1)
    ssm = self_similarity(embeddings)
    assert ssm.shape == (2, 17, 17)
    assert ssm.min() >= 0 and ssm.max() <= 1
    torch.testing.assert_close(torch.diagonal(ssm, dim1=1, dim2=2), torch.ones(2, 17))
    expected = 1 - torch.cdist(embeddings, embeddings) ** 2 / 4
    torch.testing.assert_close(ssm, expected, atol=1e-5, rtol=0)
    opposite = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    torch.testing.assert_close(self_similarity(opposite)[0, 0], torch.tensor([1.0, 0.0, 0.5]))


def test_model_outputs_shapes_and_units():
    torch.manual_seed(0)
    model = SSMNet(TINY).eval()
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    with torch.no_grad():
        out = model(torch.randn(2, 12, 40, 80), mask)
    assert out.embeddings.shape == (2, 12, 16) and out.ssm.shape == (2, 12, 12) and out.novelty.shape == (2, 12)
    torch.testing.assert_close(out.embeddings[0].norm(dim=-1), torch.ones(12))
    assert out.ssm.min() >= 0 and out.ssm.max() <= 1 and out.novelty.min() >= 0 and out.novelty.max() <= 1
    torch.testing.assert_close(torch.diagonal(out.ssm[1])[:9], torch.ones(9))
    assert (out.ssm[1, 9:] == 0).all() and (out.ssm[1, :, 9:] == 0).all() and (out.novelty[1, 9:] == 0).all()
    with pytest.raises(ValueError, match="patches must have shape"):
        model(torch.randn(2, 12, 40, 64))


def test_novelty_peaks_at_the_boundaries_of_a_block_ssm_at_init():
    # A B A with boundaries at patches 35 and 70: the untrained checkerboard kernels find both.
    labels = np.repeat([0, 1, 0], [35, 35, 30])
    ssm, _ = targets_from_labels(labels)
    torch.manual_seed(0)
    model = SSMNet(PAPER)
    with torch.no_grad():
        novelty = model.novelty(torch.as_tensor(ssm)[None])[0].numpy()
    peaks, _ = find_peaks(novelty)
    top_two = sorted(peaks[np.argsort(novelty[peaks])[-2:]])
    assert abs(top_two[0] - 35) <= 1 and abs(top_two[1] - 70) <= 1
    assert novelty[[34, 35, 69, 70]].min() > 0.8
    assert novelty[[17, 52, 85]].max() < 0.5
    # Zero padding at the edges: half a boundary, well below a real one.
    assert novelty[0] < novelty[35] - 0.2


# --- losses ------------------------------------------------------------------------------------------


def test_ssm_loss_is_class_balanced_bce():
    pred = torch.tensor([[[0.9, 0.3, 0.2], [0.4, 0.8, 0.1], [0.2, 0.6, 0.7]]])
    target = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 1, 1]]])
    positives = [0.9, 0.8, 0.1, 0.6, 0.7]
    negatives = [0.3, 0.2, 0.4, 0.2]
    expected = 0.5 * np.mean([-math.log(p) for p in positives]) + 0.5 * np.mean([-math.log(1 - p) for p in negatives])
    assert ssm_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    plain = torch.nn.functional.binary_cross_entropy(pred, target).item()
    assert plain != pytest.approx(expected, rel=1e-3)


def test_ssm_loss_with_one_class_only():
    pred = torch.tensor([[[0.9, 0.5], [0.25, 0.8]]])
    expected = np.mean([-math.log(p) for p in (0.9, 0.5, 0.25, 0.8)])
    assert ssm_loss(pred, torch.ones(1, 2, 2)).item() == pytest.approx(expected, rel=1e-5)


def test_novelty_loss_and_total():
    pred = torch.tensor([[0.2, 0.9, 0.3]])
    target = torch.tensor([[0.0, 1.0, 0.5]])
    expected = np.mean([-math.log(0.8), -math.log(0.9), -(0.5 * math.log(0.3) + 0.5 * math.log(0.7))])
    assert novelty_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    balanced = 0.5 * (-math.log(0.9) - 0.5 * math.log(0.3)) / 1.5 + 0.5 * (-math.log(0.8) - 0.5 * math.log(0.7)) / 1.5
    assert novelty_loss(pred, target, class_balanced=True).item() == pytest.approx(balanced, rel=1e-5)
    assert total_loss(torch.tensor(2.0), torch.tensor(4.0), 0.25).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="alpha"):
        total_loss(torch.tensor(2.0), torch.tensor(4.0), 1.5)
    with pytest.raises(ValueError, match="shape"):
        novelty_loss(pred, target[:, :2])


def test_a_padded_batch_gives_each_song_what_it_gives_alone():
    rng = np.random.default_rng(0)
    songs = []
    for lengths in ([20, 30], [12, 9, 12]):
        labels = np.repeat(np.arange(len(lengths)) % 2, lengths)
        ssm, novelty = targets_from_labels(labels)
        songs.append((rng.normal(size=(len(labels), 40, 80)).astype(np.float32), ssm, novelty))
    torch.manual_seed(0)
    model = SSMNet(ssmnet_config(PAPER_SSMNET["features"], **PAPER_SSMNET["model"], channels=[4, 8],
                                 embedding_dim=16, n_layers=2, n_heads=2, ff_dim=16)).eval()
    batch = collate_songs(songs)
    assert batch.patches.shape == (2, 50, 40, 80) and batch.mask.sum(1).tolist() == [50, 33]
    with torch.no_grad():
        together = model(batch.patches, batch.mask)
        alone = [model(torch.as_tensor(p)[None]) for p, _, _ in songs]
        for b, out in enumerate(alone):
            n = out.ssm.shape[1]
            torch.testing.assert_close(together.embeddings[b, :n], out.embeddings[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(together.ssm[b, :n, :n], out.ssm[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(together.novelty[b, :n], out.novelty[0], atol=1e-5, rtol=0)
        ssm_alone = [ssm_loss(out.ssm, torch.as_tensor(song[1])[None]).item() for song, out in zip(songs, alone)]
        novelty_alone = [novelty_loss(out.novelty, torch.as_tensor(song[2])[None]).item()
                         for song, out in zip(songs, alone)]
        assert ssm_loss(together.ssm, batch.ssm, batch.mask).item() == pytest.approx(np.mean(ssm_alone), rel=1e-5)
        assert novelty_loss(together.novelty, batch.novelty, batch.mask).item() == pytest.approx(
            np.mean(novelty_alone), rel=1e-5)
        # Whatever sits in the padding does not count.
        noisy = together.ssm.clone()
        noisy[1, 33:, :] = torch.rand(17, 50)
        assert ssm_loss(noisy, batch.ssm, batch.mask).item() == pytest.approx(
            ssm_loss(together.ssm, batch.ssm, batch.mask).item(), rel=1e-6)


def test_malformed_songs_are_named():
    good = (np.zeros((5, 40, 80)), np.eye(5), np.zeros(5))
    with pytest.raises(ValueError, match="song 1"):
        collate_songs([good, (np.zeros((5, 40, 80)), np.eye(4), np.zeros(5))])
    with pytest.raises(ValueError, match=r"song 0: target novelty must lie in \[0, 1\]"):
        collate_songs([(np.zeros((5, 40, 80)), np.eye(5), np.full(5, 1.5))])


# --- training on a real medley -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def medley(demo_paths):
    """A B A C from 8 s excerpts of three real demo tracks (A twice, from different places): patches and targets."""
    features_cfg = PAPER_FEATURES
    sr, seconds = features_cfg.sample_rate, 8
    a, b, c = (load_audio(demo_paths[i], sr) for i in (0, 8, 14))
    excerpts = [a[2 * sr :], b[5 * sr :], a[18 * sr :], c[5 * sr :]]
    audio = np.concatenate([x[: seconds * sr] for x in excerpts])
    cut = patches(structure_features(audio, features_cfg), features_cfg)
    times = patch_times(len(cut), features_cfg)
    boundaries = np.array([8.0, 16.0, 24.0])
    labels = np.array([0, 1, 0, 2])[np.searchsorted(boundaries, times, side="right")]
    ssm, novelty = targets_from_labels(labels)
    return cut, ssm, novelty, np.flatnonzero(np.diff(labels)) + 1


def test_training_on_a_real_medley_reduces_both_losses(medley):
    cut, ssm, novelty, boundary_patches = medley
    assert len(boundary_patches) == 3 and ssm[0, boundary_patches[1]] == 1  # the two A's share a label
    torch.manual_seed(0)
    model = SSMNet(PAPER)
    assert model.n_parameters < 200_000
    history = fit_songs(model, [(cut, ssm, novelty)], ssmnet_train_config(seed=0), epochs=40, progress=False)
    assert history.columns.tolist() == ["epoch", "ssm_loss", "novelty_loss", "total_loss", "seconds"]
    assert len(history) == 40
    first, last = history.iloc[0], history.iloc[-5:].mean()
    assert last.ssm_loss < 0.3 * first.ssm_loss  # about 0.19 here: boundary-straddling patches stay ambiguous
    assert last.novelty_loss < 0.5 * first.novelty_loss  # about 0.35 here
    np.testing.assert_allclose(history.total_loss, 0.5 * history.ssm_loss + 0.5 * history.novelty_loss, rtol=1e-5)
    with torch.no_grad():
        out = model(torch.as_tensor(cut)[None])
    predicted = out.ssm[0].numpy()
    assert predicted[ssm == 1].mean() > predicted[ssm == 0].mean() + 0.5
    peaks, _ = find_peaks(out.novelty[0].numpy(), height=0.5)
    assert len(peaks) == 3 and np.abs(peaks - boundary_patches).max() <= 1


def test_training_is_seeded(medley):
    cut, ssm, novelty, _ = medley
    histories = []
    for _ in range(2):
        torch.manual_seed(1)
        model = SSMNet(TINY)
        histories.append(fit_songs(model, [(cut, ssm, novelty)] * 2, ssmnet_train_config(seed=3, batch_size=2),
                                      epochs=2, progress=False))
    np.testing.assert_array_equal(histories[0].total_loss, histories[1].total_loss)


# --- the cepstral SSM ------------------------------------------------------------------------------


def test_dct_matrix_is_scipys_orthonormal_dct_without_c0():
    frames = np.random.default_rng(0).normal(size=(5, 80))
    expected = scipy.fft.dct(frames, type=2, norm="ortho", axis=1)[:, 1:21]
    np.testing.assert_allclose(frames @ dct_matrix(80, 20).double().numpy().T, expected, atol=1e-5)
    # A constant spectrum (a level change) has no cepstrum beyond c0.
    assert torch.allclose(torch.full((1, 80), 3.0) @ dct_matrix(80, 20).T, torch.zeros(1, 20), atol=1e-5)
    for bad in (0, 80):
        with pytest.raises(ValueError, match="n_cepstra"):
            dct_matrix(80, bad)


def test_cepstral_ssm_of_a_real_medley_separates_its_sections(medley):
    cut, ssm, _, _ = medley
    cepstral = cepstral_similarity(torch.as_tensor(cut)[None], dct_matrix(80, 20))[0].numpy()
    assert cepstral.shape == ssm.shape and cepstral.min() >= 0 and cepstral.max() <= 1
    np.testing.assert_allclose(np.diag(cepstral), 1.0, atol=1e-5)
    np.testing.assert_allclose(cepstral, cepstral.T, atol=1e-6)
    # Timbre alone: the same song's two A sections are alike, the other songs' sections are not.
    assert cepstral[ssm == 1].mean() > cepstral[ssm == 0].mean() + 0.2


def test_the_cepstral_ssm_feeds_the_novelty_and_keeps_batches_exact(medley):
    cut, ssm, novelty, boundary_patches = medley
    cfg = ssmnet_config(PAPER_SSMNET["features"], **{**PAPER_SSMNET["model"], "kernel_seconds": 8.0}, channels=[4, 8],
                        embedding_dim=16, n_layers=1, n_heads=2, ff_dim=16, cepstral_ssm=True)
    torch.manual_seed(0)
    model = SSMNet(cfg).eval()
    assert model.cepstral_kernels.shape == model.kernels.shape
    assert "cepstral_transform" not in model.state_dict()  # derived from the config, not stored
    short = cut[: len(cut) // 2]
    batch = collate_songs([(cut, ssm, novelty), (short, ssm[: len(short), : len(short)], novelty[: len(short)])])
    with torch.no_grad():
        together = model(batch.patches, batch.mask)
        alone = model(torch.as_tensor(short)[None])
        torch.testing.assert_close(together.novelty[1, : len(short)], alone.novelty[0], atol=1e-5, rtol=0)
        assert (together.novelty[1, len(short) :] == 0).all()
        # Untrained, the novelty already peaks at the boundaries: Foote's on the cepstral SSM.
        out = model(torch.as_tensor(cut)[None])
        peaks, _ = find_peaks(out.novelty[0].numpy(), distance=8)
        top = np.sort(peaks[np.argsort(out.novelty[0].numpy()[peaks])[-3:]])
        assert np.abs(top - boundary_patches).max() <= 2
        with pytest.raises(ValueError, match="cepstral SSM is required"):
            model.novelty(out.ssm)
        with pytest.raises(ValueError, match="refused without it"):
            SSMNet(TINY).novelty(out.ssm, cepstral=out.ssm)
