import torch

from songfeel.losses import triplet_correct, triplet_margin_loss


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
