"""Structure metrics of a song from the embeddings of its segments.

After "Structural Derivation": split a song into segments (10 s by default),
embed each, then

* SDC (structural derivation consistency) = mean cosine similarity between the
  first segment and every later segment;
* Structural Diversity = Vendi score with q = 1 (Friedman & Dieng, "The Vendi
  Score", arXiv 2210.02410) of the cosine similarity matrix of the
  L2-normalised segment embeddings, also reported divided by the number of
  segments because the raw score grows with song length.
"""

from __future__ import annotations

import numpy as np
from vendi_score import vendi


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"segment embeddings must be (n_segments, dim), got shape {embeddings.shape}")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise ValueError("segment embeddings must be finite and non-zero")
    return embeddings / norms


def similarity_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Cosine self-similarity matrix (SSM) of segment embeddings, (n, n), diagonal 1.

    Raises:
        ValueError: an embedding is zero or not finite.
    """
    unit = _unit_rows(embeddings)
    ssm = unit @ unit.T
    np.fill_diagonal(ssm, 1.0)
    return ssm


def sdc(embeddings: np.ndarray) -> float:
    """Mean cosine similarity of segment 1 with every later segment; NaN for one segment."""
    ssm = similarity_matrix(embeddings)
    if ssm.shape[0] < 2:
        return float("nan")
    return float(ssm[0, 1:].mean())


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (q = 1) of the cosine SSM, in [1, n_segments]; NaN for one segment."""
    ssm = similarity_matrix(embeddings)
    if ssm.shape[0] < 2:
        return float("nan")
    return float(vendi.score_K(ssm, q=1))


def consistency_metrics(embeddings: np.ndarray) -> dict[str, float]:
    """``sdc``, ``vendi_score`` and ``vendi_per_segment`` of one song's segments."""
    n_segments = len(embeddings)
    score = vendi_score(embeddings)
    return {
        "n_segments": n_segments,
        "sdc": sdc(embeddings),
        "vendi_score": score,
        "vendi_per_segment": score / n_segments,
    }
