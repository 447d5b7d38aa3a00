"""Stage 02 (teacher): the teacher's per-patch outputs of every track, cached in HDF5 for distillation.
The only stage that imports TensorFlow (inside :mod:`songfeel.teacher.musicnn`'s workers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from songfeel import manifest
from songfeel.store import write_skipped
from songfeel.teacher.stage import write_teacher_store


def teacher_targets(teacher, manifest_path: str | Path, store_path: str | Path, skipped_path: str | Path) -> pd.DataFrame:
    """Bring the teacher-target store up to date with the manifest, incrementally.

    Args:
        teacher: the ``teacher`` config group (``conf/teacher/``).
        manifest_path: stage 01's manifest.
        store_path: the teacher-target store to write (``docs/formats.md``).
        skipped_path: the CSV of tracks the teacher could not analyse (``track_id, path, error``).

    Returns:
        the skipped tracks (also written to ``skipped_path``).

    Raises:
        songfeel.teacher.stage.TeacherStoreError: a worker died; finished tracks are kept.
    """
    skipped, _ = write_teacher_store(manifest.read(manifest_path), store_path, teacher, n_jobs=teacher.n_jobs,
                                     min_seconds=teacher.min_seconds)
    write_skipped(skipped, skipped_path)
    return skipped
