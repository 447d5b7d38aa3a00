"""Stage 04 (train): one embedder variant; Hydra multirun sweeps the variants."""

from __future__ import annotations

from pathlib import Path

from songfeel.train import distils, train_variant


def train(cfg, features_path: str | Path, triplets_path: str | Path, manifest_path: str | Path,
          teacher_path: str | Path, out_dir: str | Path) -> float:
    """Train the variant ``cfg`` composes and write its run folder.

    Args:
        cfg: the variant: the ``window``, ``head``, ``model``, ``loss``, ``augment`` and ``train``
            groups, with ``dataset.label_columns`` (:func:`songfeel.train.train_variant`).
        features_path, triplets_path, manifest_path: the outputs of stages 02, 03 and 01.
        teacher_path: the teacher-target store; read only when ``cfg.loss`` distils.
        out_dir: the run folder (``train.out_dir``).

    Returns:
        the validation triplet accuracy, which Hydra sweeps and stage 06 select on.
    """
    teacher = teacher_path if distils(cfg.loss) else None
    metrics = train_variant(cfg, features_path, triplets_path, out_dir, manifest_path, teacher)
    return metrics["val_triplet_accuracy"]
