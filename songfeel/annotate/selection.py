"""Which question to ask next: even coverage, repeats as consistency checks, optional uncertainty.

A *question* is an unordered set of three songs; a *triplet* is one question
shown to one listener, its three clips in a given order (A, B, C).

* **Coverage.** A new question starts from the least-asked song (ties broken by
  a seeded random key) and adds the two least-asked songs of the same split
  that, together with it, form a question this listener has not seen.
* **Repeats.** About ``repeat_fraction`` of a listener's questions repeat one
  of their earlier answered questions, at least ``min_gap`` questions later and
  with the clips rotated so that every clip moves to another position.
* **Uncertainty (optional).** With per-song embeddings, the two companions are
  the pair, among the ``pool`` least-asked songs of the split, whose question
  the model is least sure of: the two smallest pairwise distances are nearly
  equal (:func:`uncertainty_margin` closest to 0).

Every random choice comes from :func:`annotator_rng`, seeded by the survey's
seed, the listener and the question's position, so a run is reproducible.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.spatial.distance

from songfeel.manifest import stable_hash

log = logging.getLogger(__name__)


def annotator_rng(seed: int, annotator_id: str, position: int) -> np.random.Generator:
    """The random generator of one listener's ``position``-th question (1-based)."""
    return np.random.default_rng([int(seed), stable_hash(annotator_id, int(seed)), int(position)])


def repeat_positions(annotator_id: str, total: int, fraction: float, min_gap: int, seed: int) -> frozenset[int]:
    """The 1-based positions at which a listener is asked a repeat.

    ``round(total * fraction)`` distinct positions in ``[min_gap + 1, total]``,
    drawn with a generator seeded by ``seed`` and the listener: fixed for a
    listener, different between listeners.

    Args:
        annotator_id: the listener.
        total: questions per session.
        fraction: share of repeats, in [0, 1).
        min_gap: a repeat comes at least this many questions after its original.
        seed: the survey's seed.

    Returns:
        the positions (empty when ``fraction`` is 0 or the session is too short).
    """
    wanted = int(total * fraction + 0.5)
    candidates = np.arange(min_gap + 1, total + 1)
    wanted = min(wanted, candidates.size)
    if wanted <= 0:
        return frozenset()
    rng = np.random.default_rng([int(seed), stable_hash(annotator_id, int(seed)), 0])
    return frozenset(int(p) for p in rng.choice(candidates, size=wanted, replace=False))


def rotate(items: Sequence, rng: np.random.Generator) -> list:
    """``items`` (three) rotated by one or two places: every item moves to another position."""
    shift = int(rng.integers(1, len(items)))
    return list(items[shift:]) + list(items[:shift])


def pairwise_distances(vectors: np.ndarray) -> np.ndarray:
    """Euclidean distances between three embeddings.

    Args:
        vectors: array of shape (3, dim).

    Returns:
        array of shape (3,): d(0, 1), d(0, 2), d(1, 2).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != 3:
        raise ValueError(f"expected three embeddings, shape (3, dim), got {vectors.shape}")
    return scipy.spatial.distance.pdist(vectors)  # condensed order: (0, 1), (0, 2), (1, 2)


def uncertainty_margin(vectors: np.ndarray) -> float:
    """How sure a model is of the odd one out of three songs, from their embeddings.

    The model's answer is the song outside the closest pair. With the pairwise
    distances sorted, ``d1 <= d2 <= d3``, the margin is ``(d2 - d1) / d2``: 0
    when the two closest pairs are equally close (two songs are equally good
    odd ones out, the model cannot decide), near 1 when one pair is far closer
    than any other. Three identical embeddings give 0.

    Args:
        vectors: array of shape (3, dim).

    Returns:
        the margin, in [0, 1].
    """
    d1, d2, _ = np.sort(pairwise_distances(vectors))
    return 0.0 if d2 <= 0 else float((d2 - d1) / d2)


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """Per-song embeddings keyed by track id.

    Formats: CSV with a ``track_id`` column and one numeric column per
    dimension; NPZ with ``track_ids`` (n,) and ``embeddings`` (n, dim).

    Returns:
        track id -> float64 vector of shape (dim,).

    Raises:
        ValueError: unknown extension, missing columns or arrays, non-finite values,
            repeated track ids or mismatched shapes (the message names the file).
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype={"track_id": str})
        if "track_id" not in frame.columns or frame.shape[1] < 2:
            raise ValueError(f"{path}: expected a track_id column and at least one embedding column")
        ids = frame["track_id"].astype(str).tolist()
        try:
            matrix = frame.drop(columns=["track_id"]).to_numpy(dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}: embedding columns must be numeric ({exc})") from exc
    elif path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if not {"track_ids", "embeddings"} <= set(data.files):
                raise ValueError(f"{path}: expected arrays track_ids and embeddings, found {sorted(data.files)}")
            ids = [str(t) for t in data["track_ids"]]
            matrix = np.asarray(data["embeddings"], dtype=np.float64)
    else:
        raise ValueError(f"{path}: embeddings must be .csv or .npz")
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"{path}: {len(ids)} track ids but embeddings of shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{path}: embeddings contain NaN or Inf")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: repeated track ids")
    return {t: matrix[i] for i, t in enumerate(ids)}


def _ranked(tracks: Sequence[str], exposures: Mapping[str, int], rng: np.random.Generator) -> list[str]:
    """``tracks`` ordered by exposures, ties broken by a random key."""
    keys = rng.random(len(tracks))
    return [t for _, _, t in sorted(zip((exposures.get(t, 0) for t in tracks), keys, tracks))]


def choose_songs(
    exposures: Mapping[str, int],
    splits: Mapping[str, str],
    avoid: set[frozenset[str]],
    rng: np.random.Generator,
    embeddings: Mapping[str, np.ndarray] | None = None,
    pool: int = 12,
    same_split: bool = True,
) -> tuple[str, str, str] | None:
    """Three songs for a new question: least asked first, avoiding questions in ``avoid``.

    Args:
        exposures: times each available song was asked in a question (repeats not counted);
            its keys are the songs that may be chosen.
        splits: split of each song; with ``same_split`` the three share one.
        avoid: questions (sets of three track ids) not to ask, e.g. the listener's earlier ones.
        rng: random generator (ties, shuffles).
        embeddings: optional per-song embeddings for the uncertainty mode.
        pool: in the uncertainty mode, the companions considered (least asked first).
        same_split: keep the three songs in one split.

    Returns:
        three track ids (the least-asked song first), or None when no split has
        three songs. When every question is in ``avoid``, the least-asked one is
        returned anyway (and logged).
    """
    groups: dict[str, list[str]] = {}
    for track in exposures:
        groups.setdefault(splits.get(track, "") if same_split else "", []).append(track)
    eligible = [t for members in groups.values() if len(members) >= 3 for t in members]
    if not eligible:
        return None
    group_of = {t: (splits.get(t, "") if same_split else "") for t in eligible}
    fallback = None
    for first in _ranked(eligible, exposures, rng):
        companions = _ranked([t for t in groups[group_of[first]] if t != first], exposures, rng)
        if embeddings is not None and first in embeddings:
            found = _most_uncertain(first, [t for t in companions if t in embeddings][:pool], embeddings, avoid)
            if found is not None:
                return found
        for second, third in itertools.combinations(companions, 2):
            question = (first, second, third)
            if fallback is None:
                fallback = question
            if frozenset(question) not in avoid:
                return question
    log.info("every question of the available songs was asked to this listener already; asking one again")
    return fallback


def _most_uncertain(first: str, companions: Sequence[str], embeddings: Mapping[str, np.ndarray],
                    avoid: set[frozenset[str]]) -> tuple[str, str, str] | None:
    """The question ``first`` + two of ``companions`` with the smallest uncertainty margin, not in ``avoid``."""
    best, best_margin = None, np.inf
    for second, third in itertools.combinations(companions, 2):
        if frozenset((first, second, third)) in avoid:
            continue
        margin = uncertainty_margin(np.stack([embeddings[first], embeddings[second], embeddings[third]]))
        if margin < best_margin:
            best, best_margin = (first, second, third), margin
    return best


__all__ = [
    "annotator_rng",
    "choose_songs",
    "load_embeddings",
    "pairwise_distances",
    "repeat_positions",
    "rotate",
    "uncertainty_margin",
]
