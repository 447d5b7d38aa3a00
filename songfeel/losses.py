"""Training losses on L2-normalised embeddings."""

from __future__ import annotations

import torch
from torch import nn


def triplet_margin_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean of ``max(0, d(a, p) - d(a, n) + margin)`` with Euclidean d.

    Schroff et al., "FaceNet", CVPR 2015 (arXiv 1503.03832). On unit vectors
    the Euclidean distance lies in [0, 2].

    Args:
        anchor, positive, negative: (batch, dim).
        margin: the margin, in units of Euclidean distance.

    Returns:
        a scalar tensor.
    """
    return nn.functional.triplet_margin_loss(anchor, positive, negative, margin=margin, p=2.0)


def triplet_correct(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Per triplet, whether d(a, p) < d(a, n); bool (batch,)."""
    return (anchor - positive).norm(dim=-1) < (anchor - negative).norm(dim=-1)


MINING_MODES = ("none", "hard", "semi-hard")


def _check_triplets(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                    anchor_groups: torch.Tensor, positive_groups: torch.Tensor, negative_groups: torch.Tensor,
                    mining: str) -> None:
    if mining not in MINING_MODES:
        raise ValueError(f"unknown mining mode {mining!r}, expected one of {MINING_MODES}")
    if anchor.ndim != 2 or anchor.shape[0] == 0:
        raise ValueError(f"anchor must be (batch >= 1, dim), got {tuple(anchor.shape)}")
    for name, tensor in (("positive", positive), ("negative", negative)):
        if tensor.shape != anchor.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, anchor {tuple(anchor.shape)}")
    for name, groups in (("anchor_groups", anchor_groups), ("positive_groups", positive_groups),
                         ("negative_groups", negative_groups)):
        if groups.shape != anchor.shape[:1]:
            raise ValueError(f"{name} must be ({anchor.shape[0]},), got {tuple(groups.shape)}")


def select_negatives(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    anchor_groups: torch.Tensor,
    positive_groups: torch.Tensor,
    negative_groups: torch.Tensor,
    mining: str = "semi-hard",
) -> torch.Tensor:
    """The in-batch negative chosen for each anchor.

    The candidates are the ``3 * batch`` embeddings of
    ``torch.cat((anchor, positive, negative))``. A candidate is valid for anchor
    ``i`` when its group differs from ``anchor_groups[i]``; the sampled
    ``negative[i]`` is always valid, whatever its group, and the anchor's own
    ``positive[i]`` never is (a listener's triplet may put anchor and positive in
    different groups). Distances are Euclidean.

    * ``"none"``: the sampled negative, index ``2 * batch + i``.
    * ``"hard"``: the nearest valid candidate.
    * ``"semi-hard"``: the nearest valid candidate with ``d(a, n) > d(a, p)``,
      else the farthest valid candidate. Schroff et al., "FaceNet", CVPR 2015
      (arXiv 1503.03832), section 3.2, with the fallback of TensorFlow Addons'
      ``triplet_semihard_loss``.

    Ties go to the lowest index. Nothing here is differentiated.

    Args:
        anchor, positive, negative: (batch, dim) embeddings.
        anchor_groups, positive_groups, negative_groups: int64 (batch,) label
            group ids of each row's track (e.g. its album or genre).
        mining: ``"none"``, ``"hard"`` or ``"semi-hard"``.

    Returns:
        int64 (batch,) indices into ``torch.cat((anchor, positive, negative))``.

    Raises:
        ValueError: an unknown ``mining`` mode, an empty batch or mismatched shapes.
    """
    _check_triplets(anchor, positive, negative, anchor_groups, positive_groups, negative_groups, mining)
    batch = anchor.shape[0]
    rows = torch.arange(batch, device=anchor.device)
    if mining == "none":
        return rows + 2 * batch
    with torch.no_grad():
        candidates = torch.cat((anchor, positive, negative)).detach()
        groups = torch.cat((anchor_groups, positive_groups, negative_groups)).to(anchor.device)
        # The matrix-product form of cdist loses ~1e-3 to cancellation, enough to
        # misjudge d(a, n) > d(a, p) between near-equal distances.
        dist = torch.cdist(anchor.detach(), candidates, compute_mode="donot_use_mm_for_euclid_dist")
        valid = groups.unsqueeze(0) != anchor_groups.to(anchor.device).unsqueeze(1)
        valid[rows, rows + batch] = False
        valid[rows, rows + 2 * batch] = True
        nearest = dist.masked_fill(~valid, float("inf")).argmin(dim=1)
        if mining == "hard":
            return nearest
        d_ap = dist[rows, rows + batch]
        beyond = valid & (dist > d_ap.unsqueeze(1))
        nearest_beyond = dist.masked_fill(~beyond, float("inf")).argmin(dim=1)
        farthest = dist.masked_fill(~valid, float("-inf")).argmax(dim=1)
        return torch.where(beyond.any(dim=1), nearest_beyond, farthest)


def mined_triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    anchor_groups: torch.Tensor,
    positive_groups: torch.Tensor,
    negative_groups: torch.Tensor,
    margin: float,
    mining: str,
) -> torch.Tensor:
    """Triplet margin loss with in-batch negative mining.

    Per anchor ``max(0, d(a, p) - d(a, n) + margin)`` with Euclidean d, where n
    is the candidate picked by :func:`select_negatives` (see there for the
    candidates and the modes); mean over the batch. Schroff et al., "FaceNet",
    CVPR 2015 (arXiv 1503.03832). With ``mining="none"`` this is
    :func:`triplet_margin_loss`. The gradient flows through the anchor, the
    positive and the chosen candidate's embedding, whichever role it came from.

    Args:
        anchor, positive, negative: (batch, dim) L2-normalised embeddings.
        anchor_groups, positive_groups, negative_groups: int64 (batch,) label
            group ids of each row's track (e.g. its album or genre).
        margin: the margin, in units of Euclidean distance (in [0, 2] on unit vectors).
        mining: ``"none"``, ``"hard"`` or ``"semi-hard"``.

    Returns:
        a scalar tensor.

    Raises:
        ValueError: an unknown ``mining`` mode, an empty batch or mismatched shapes.
    """
    index = select_negatives(anchor, positive, negative, anchor_groups, positive_groups, negative_groups, mining)
    chosen = negative if mining == "none" else torch.cat((anchor, positive, negative))[index]
    return triplet_margin_loss(anchor, positive, chosen, margin)


def nt_xent_loss(
    view_a: torch.Tensor, view_b: torch.Tensor, temperature: float, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy, InfoNCE) over two views.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), ICML 2020 (arXiv 2002.05709), eq. 1. The
    ``2 * batch`` samples are ``torch.cat((view_a, view_b))``; sample ``k``'s
    positive is the other view of its row, and its denominator holds every other
    sample. With ``groups``, samples of another row with the same group as ``k``
    leave the denominator too (another crop of the same track is no negative).
    Similarities are cosines divided by ``temperature``; the loss is the mean
    over the ``2 * batch`` anchors.

    Args:
        view_a, view_b: (batch, dim) embeddings (L2-normalised; they are
            normalised again, which changes nothing for unit vectors).
        temperature: softmax temperature, > 0 (unitless; SimCLR uses 0.1-0.5).
        groups: optional int64 (batch,) group id of each row (e.g. its track id).

    Returns:
        a scalar tensor.

    Raises:
        ValueError: ``temperature <= 0``, an empty batch or mismatched shapes.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if view_a.ndim != 2 or view_a.shape[0] == 0:
        raise ValueError(f"view_a must be (batch >= 1, dim), got {tuple(view_a.shape)}")
    if view_b.shape != view_a.shape:
        raise ValueError(f"view_b has shape {tuple(view_b.shape)}, view_a {tuple(view_a.shape)}")
    if groups is not None and groups.shape != view_a.shape[:1]:
        raise ValueError(f"groups must be ({view_a.shape[0]},), got {tuple(groups.shape)}")
    batch = view_a.shape[0]
    z = nn.functional.normalize(torch.cat((view_a, view_b)), dim=1)
    logits = z @ z.T / temperature
    rows = torch.arange(2 * batch, device=z.device)
    target = (rows + batch) % (2 * batch)
    if groups is None:
        excluded = rows.unsqueeze(0) == rows.unsqueeze(1)
    else:
        both = torch.cat((groups, groups)).to(z.device)
        excluded = both.unsqueeze(0) == both.unsqueeze(1)
    excluded[rows, target] = False
    # -inf logits drop out of the log-sum-exp that cross_entropy computes stably;
    # the positive column is always finite, so no row is all -inf.
    return nn.functional.cross_entropy(logits.masked_fill(excluded, float("-inf")), target)


def _check_pairs(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.ndim != 2 or teacher.ndim != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student and teacher must be (batch, dim) with the same batch, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[0] < 2:
        raise ValueError(f"a batch of at least 2 is needed, got {student.shape[0]}")


def regression_distillation_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a projection of the student's embeddings and the teacher's targets.

    The "hint" regression of FitNets (Romero et al., ICLR 2015, arXiv 1412.6550) on the
    output side: a small, non-exported projection maps the 32-d embedding of a crop to
    the teacher's outputs pooled over the same crop (z-scored, so every teacher dimension
    weighs the same).

    Args:
        projected: (batch, teacher_dim) the student's projected embeddings.
        teacher: (batch, teacher_dim) z-scored teacher targets.

    Returns:
        a scalar tensor: the mean over the batch and the dimensions.

    Raises:
        ValueError: the shapes differ or the batch is empty.
    """
    if projected.shape != teacher.shape or projected.ndim != 2 or projected.shape[0] == 0:
        raise ValueError(f"projected and teacher must be the same (batch >= 1, dim), got "
                         f"{tuple(projected.shape)} and {tuple(teacher.shape)}")
    return nn.functional.mse_loss(projected, teacher)


def _normalised_distances(points: torch.Tensor) -> torch.Tensor:
    """The pairwise Euclidean distances of (n, dim) points over pairs i < j (:func:`torch.pdist`), divided
    by their mean."""
    distances = torch.pdist(points)
    return distances / distances.mean().clamp_min(1e-12)


def relational_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Distance-wise relational knowledge distillation: the student's pairwise distances match the teacher's.

    Park, Kim, Lu and Cho, "Relational Knowledge Distillation", CVPR 2019 (arXiv
    1904.05068), eq. 4-6: for every pair (i, j), i < j, of the batch, the distances
    ``psi(x_i, x_j) = ||x_i - x_j|| / mu`` in the student's and in the teacher's space,
    each divided by the mean ``mu`` of its own space's distances in the batch, are
    compared with the Huber loss (smooth L1, delta 1), averaged over the pairs. Only the
    *shape* of the batch is transferred, so the 32-d student is free of the teacher's scale.

    Args:
        student: (batch, dim_s) student embeddings.
        teacher: (batch, dim_t) teacher targets of the same crops.

    Returns:
        a scalar tensor; 0 when the two spaces' normalised distances agree.

    Raises:
        ValueError: shapes that do not pair up, or a batch smaller than 2.
    """
    _check_pairs(student, teacher)
    with torch.no_grad():
        target = _normalised_distances(teacher.to(student.dtype))
    return nn.functional.smooth_l1_loss(_normalised_distances(student), target)
