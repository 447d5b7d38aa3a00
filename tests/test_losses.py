import math

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf

from songfeel.losses import (
    mined_triplet_loss,
    nt_xent_loss,
    regression_distillation_loss,
    relational_distillation_loss,
    select_negatives,
    triplet_correct,
    triplet_margin_loss,
)

#: The real loss config group (conf/loss/combined.yaml): the NT-Xent temperature and the mining that train with it.
LOSS = OmegaConf.load(REPO / "conf/loss/combined.yaml")


def test_triplet_loss_and_correctness():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    p = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.0, 1.0]]), dim=-1)
    n = torch.nn.functional.normalize(torch.tensor([[-1.0, 0.0], [1.0, 0.05]]), dim=-1)
    assert triplet_correct(a, p, n).tolist() == [True, False]
    easy = triplet_margin_loss(a[:1], p[:1], n[:1], margin=0.3)
    hard = triplet_margin_loss(a[1:], p[1:], n[1:], margin=0.3)
    assert easy.item() == 0.0
    d_ap, d_an = (a[1] - p[1]).norm(), (a[1] - n[1]).norm()
    assert torch.isclose(hard, d_ap - d_an + 0.3, atol=1e-5)


# --- mined triplet loss -----------------------------------------------------

def unit(*degrees: float) -> torch.Tensor:
    """Unit vectors of the plane at the given angles."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack((rad.cos(), rad.sin()), dim=1)


def chord(degrees: float) -> float:
    """Euclidean distance of two unit vectors ``degrees`` apart."""
    return 2 * math.sin(math.radians(degrees) / 2)


def groups(*ids: int) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.int64)


def three_rows():
    """Batch of 3; candidate indices 0-2 anchors, 3-5 positives, 6-8 negatives.

    Anchor 0 (0 deg, group 0, positive at 30 deg): the nearest candidate is n2
    (5 deg) but of group 0; the nearest valid one is n1 (10 deg, index 7), the
    nearest beyond the positive a1 (60 deg, index 1), the farthest n0 (170 deg).
    Anchor 1 (60 deg, group 1, positive at 70): nearest valid p0 (30 deg off, index 3).
    Anchor 2 (-90 deg, group 2, positive at -80): nearest valid a0 (90 deg off, index 0).
    """
    a = unit(0, 60, -90)
    p = unit(30, 70, -80)
    n = unit(170, 10, 5)
    return a, p, n, groups(0, 1, 2), groups(0, 1, 2), groups(1, 2, 0)


def test_mining_none_equals_triplet_margin_loss():
    a, p, n, ga, gp, gn = three_rows()
    assert select_negatives(a, p, n, ga, gp, gn, mining="none").tolist() == [6, 7, 8]
    assert torch.equal(mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.2, mining="none"),
                       triplet_margin_loss(a, p, n, margin=0.2))
    torch.manual_seed(0)
    a, p, n = (torch.nn.functional.normalize(torch.randn(16, 32), dim=1) for _ in range(3))
    g = torch.randint(0, 4, (3, 16))
    assert torch.equal(mined_triplet_loss(a, p, n, *g, margin=0.3, mining="none"),
                       triplet_margin_loss(a, p, n, margin=0.3))


def test_hard_mining_picks_nearest_candidate_of_another_group():
    a, p, n, ga, gp, gn = three_rows()
    assert select_negatives(a, p, n, ga, gp, gn, mining="hard").tolist() == [7, 3, 0]
    # Only anchor 0 violates the margin: d(30 deg) - d(10 deg) + 0.2.
    expected = (chord(30) - chord(10) + 0.2) / 3
    loss = mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.2, mining="hard")
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_semi_hard_mining_picks_nearest_candidate_beyond_the_positive():
    a, p, n, ga, gp, gn = three_rows()
    assert select_negatives(a, p, n, ga, gp, gn, mining="semi-hard").tolist() == [1, 3, 0]
    # Anchor 2's semi-hard negative lies beyond the margin: no loss.
    assert chord(10) - chord(90) + 0.6 < 0
    expected = (chord(30) - chord(60) + 0.6) + (chord(10) - chord(30) + 0.6)
    loss = mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.6, mining="semi-hard")
    assert loss.item() == pytest.approx(expected / 3, abs=1e-5)


def test_semi_hard_falls_back_to_the_farthest_candidate():
    # Anchor 0 (0 deg, positive at 120): valid are a1 (90), p1 (100), n0 (40);
    # n1 (60 deg) is of its own group. None lies beyond 120 deg: farthest is p1 (index 3).
    # Anchor 1 (90 deg, positive at 100): nearest valid beyond 10 deg is p0 (30 deg off, index 2).
    a, p, n = unit(0, 90), unit(120, 100), unit(40, -60)
    ga, gp, gn = groups(0, 1), groups(0, 1), groups(1, 0)
    assert select_negatives(a, p, n, ga, gp, gn, mining="semi-hard").tolist() == [3, 2]
    expected = (chord(120) - chord(100) + 0.1) + max(0.0, chord(10) - chord(30) + 0.1)
    loss = mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.1, mining="semi-hard")
    assert loss.item() == pytest.approx(expected / 2, abs=1e-5)


@pytest.mark.parametrize("mining", ["hard", "semi-hard"])
def test_given_negative_is_always_valid_and_own_group_never(mining):
    a, p, n, *_ = three_rows()
    # Every crop in one group (as without a manifest): only the sampled negatives remain.
    same = groups(-1, -1, -1)
    assert select_negatives(a, p, n, same, same, same, mining=mining).tolist() == [6, 7, 8]
    assert torch.equal(mined_triplet_loss(a, p, n, same, same, same, margin=0.2, mining=mining),
                       triplet_margin_loss(a, p, n, margin=0.2))
    # The anchor's own positive is no negative even when its group differs
    # (a listener's triplet); here it is the nearest candidate of anchor 0.
    a, p, n = unit(0, 90), unit(20, 100), unit(45, 180)
    chosen = select_negatives(a, p, n, groups(0, 1), groups(2, 1), groups(1, 0), mining=mining)
    assert chosen[0].item() != 2


@pytest.mark.parametrize("mining", ["hard", "semi-hard"])
def test_selection_matches_a_loop_reference(mining):
    torch.manual_seed(1)
    batch = 12
    a, p, n = (torch.nn.functional.normalize(torch.randn(batch, 8), dim=1) for _ in range(3))
    ga, gp, gn = torch.randint(0, 3, (3, batch))
    cands, cand_groups = torch.cat((a, p, n)), torch.cat((ga, gp, gn))
    expected = []
    for i in range(batch):
        valid = [j for j in range(3 * batch)
                 if j == 2 * batch + i or (cand_groups[j] != ga[i] and j != batch + i)]
        dist = {j: (a[i] - cands[j]).norm().item() for j in valid}
        d_ap = (a[i] - p[i]).norm().item()
        beyond = [j for j in valid if dist[j] > d_ap]
        if mining == "hard":
            expected.append(min(valid, key=dist.get))
        elif beyond:
            expected.append(min(beyond, key=dist.get))
        else:
            expected.append(max(valid, key=dist.get))
    for i, j in enumerate(expected):
        assert j == 2 * batch + i or (cand_groups[j] != ga[i] and j != batch + i)
    assert select_negatives(a, p, n, ga, gp, gn, mining=mining).tolist() == expected


def test_gradient_reaches_the_chosen_candidate():
    a, p, n, ga, gp, gn = three_rows()
    a, p, n = (t.clone().requires_grad_() for t in (a, p, n))
    mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.2, mining="hard").backward()
    # Anchor 0 chose n1 (index 7) and violates the margin; n0 and n2 were not chosen.
    assert n.grad[1].norm() > 0
    assert n.grad[0].norm() == 0 and n.grad[2].norm() == 0
    assert a.grad[0].norm() > 0 and p.grad[0].norm() > 0


def test_mined_triplet_loss_errors():
    a, p, n, ga, gp, gn = three_rows()
    with pytest.raises(ValueError, match="mining"):
        mined_triplet_loss(a, p, n, ga, gp, gn, margin=0.2, mining="hardest")
    with pytest.raises(ValueError, match="negative"):
        mined_triplet_loss(a, p, n[:2], ga, gp, gn, margin=0.2, mining=LOSS.mining)
    with pytest.raises(ValueError, match="positive_groups"):
        mined_triplet_loss(a, p, n, ga, gp[:2], gn, margin=0.2, mining=LOSS.mining)
    with pytest.raises(ValueError, match="anchor"):
        mined_triplet_loss(a[:0], p[:0], n[:0], ga[:0], gp[:0], gn[:0], margin=0.2, mining=LOSS.mining)


# --- NT-Xent ----------------------------------------------------------------

def nt_xent_reference(view_a, view_b, temperature, groups=None):
    z = torch.cat((view_a, view_b))
    size = z.shape[0]
    half = size // 2
    g = None if groups is None else torch.cat((groups, groups)).tolist()
    losses = []
    for k in range(size):
        pos = (k + half) % size
        denominator = 0.0
        for j in range(size):
            if j == k or (g is not None and j != pos and g[j] == g[k]):
                continue
            denominator += math.exp(float(z[k] @ z[j]) / temperature)
        losses.append(-math.log(math.exp(float(z[k] @ z[pos]) / temperature) / denominator))
    return sum(losses) / size


def random_views(batch=6, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    return a, b


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_loop_reference(temperature):
    a, b = random_views()
    assert nt_xent_loss(a, b, temperature).item() == pytest.approx(nt_xent_reference(a, b, temperature), rel=1e-9)
    g = groups(0, 1, 0, 2, 1, 3)
    assert nt_xent_loss(a, b, temperature, groups=g).item() == pytest.approx(
        nt_xent_reference(a, b, temperature, g), rel=1e-9)
    # Masking same-group rows changes the loss; distinct groups change nothing.
    assert nt_xent_loss(a, b, temperature, groups=g).item() != pytest.approx(nt_xent_loss(a, b, temperature).item())
    assert nt_xent_loss(a, b, temperature, groups=torch.arange(6)).item() == pytest.approx(
        nt_xent_loss(a, b, temperature).item(), rel=1e-12)


def test_nt_xent_prefers_aligned_views():
    torch.manual_seed(2)
    a = torch.nn.functional.normalize(torch.randn(16, 32), dim=1)
    b = torch.nn.functional.normalize(a + 0.1 * torch.randn(16, 32), dim=1)
    shuffled = b[torch.roll(torch.arange(16), 1)]
    assert nt_xent_loss(a, b, LOSS.temperature).item() < nt_xent_loss(a, shuffled, LOSS.temperature).item()
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = nt_xent_loss(a, b, LOSS.temperature, groups=groups(*([0, 1] * 8)))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_nt_xent_errors():
    a, b = random_views()
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            nt_xent_loss(a, b, temperature=bad)
    with pytest.raises(ValueError, match="view_b"):
        nt_xent_loss(a, b[:5], LOSS.temperature)
    with pytest.raises(ValueError, match="groups"):
        nt_xent_loss(a, b, LOSS.temperature, groups=groups(0, 1))


# --- distillation -------------------------------------------------------------

def test_relational_loss_on_a_hand_computed_example():
    # Student: a 3-4-5 right triangle; pair distances (0,1) 3, (0,2) 4, (1,2) 5, mean 4 -> 0.75, 1, 1.25.
    student = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], requires_grad=True)
    # Teacher: points 0, 1, 3 on a line; distances 1, 3, 2, mean 2 -> 0.5, 1.5, 1.
    teacher = torch.tensor([[0.0], [1.0], [3.0]])
    # Differences 0.25, -0.5, 0.25, all under Huber's delta 1: 0.5 d^2 = 1/32, 1/8, 1/32, mean 1/16.
    loss = relational_distillation_loss(student, teacher)
    assert loss.item() == pytest.approx(1 / 16, abs=1e-7)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    # Only the shape of the batch counts: scaling or moving either space changes nothing.
    assert relational_distillation_loss(student * 7 + 1, teacher * 0.1 - 5).item() == pytest.approx(1 / 16, abs=1e-6)
    # The same relations (a rotated, scaled copy in another dimension) give 0.
    same = torch.tensor([[0.0, 0.0, 1.0], [0.0, 6.0, 1.0], [8.0, 0.0, 1.0]])
    assert relational_distillation_loss(student, same).item() == pytest.approx(0.0, abs=1e-7)
    # Larger differences: an equilateral student (normalised distances 1, 1, 1) against a teacher whose
    # distances are 4, 4, ~0 (mean 8/3 -> 1.5, 1.5, 0): |d| = 0.5, 0.5, 1 -> 0.125, 0.125, 0.5, mean 0.25.
    equilateral = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3.0)]])
    far = relational_distillation_loss(equilateral, torch.tensor([[0.0], [4.0], [4.0 + 1e-6]]))
    assert far.item() == pytest.approx(0.25, abs=1e-5)


def test_relational_loss_refuses_bad_batches():
    with pytest.raises(ValueError, match="at least 2"):
        relational_distillation_loss(torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="same batch"):
        relational_distillation_loss(torch.zeros(3, 4), torch.zeros(2, 3))


def test_regression_loss_is_the_mean_squared_error():
    projected = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, -1.0]])
    assert regression_distillation_loss(projected, teacher).item() == pytest.approx((0 + 4 + 1 + 0) / 4)
    with pytest.raises(ValueError, match="same"):
        regression_distillation_loss(projected, teacher[:, :1])
