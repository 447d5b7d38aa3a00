"""The one training loop of songfeel: epochs of optimisation steps, validation after each epoch, the
best epoch kept by a model's own rule, early stopping and hooks for checkpoints and resume state.

The student embedder (:func:`songfeel.train.train_variant`) and SSM-Net
(:func:`songfeel.segmentation.training.train_ssmnet`) each bring their own step function (one
optimisation step on one batch: loss, backward, optimiser, schedule, weight average) and their own
validation, selection rule and files; this module runs them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

#: A history row: ``epoch``, the training means, the validation scores, ``seconds``.
Row = dict[str, Any]


@dataclass
class LoopState:
    """Where a training run stands; what a resumed run restores.

    Attributes:
        history: one :data:`Row` per epoch run so far.
        best: the row of the best epoch so far (None before the first).
        stale: epochs since the best one.
        done: the run has finished (last epoch or early stop).
    """

    history: list[Row] = field(default_factory=list)
    best: Row | None = None
    stale: int = 0
    done: bool = False


def step_sums(step: Callable[[Any], Mapping[str, float]], batches: Iterable) -> tuple[dict[str, float], int]:
    """Run ``step`` on every batch of one epoch; the sums of what it returns, and the number of steps.

    Args:
        step: one optimisation step on one batch; returns numbers to sum over the epoch (losses, counts).
        batches: the epoch's batches, in order.

    Raises:
        ValueError: the epoch has no batch.
    """
    sums: dict[str, float] = {}
    n_steps = 0
    for batch in batches:
        for key, value in step(batch).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        n_steps += 1
    if n_steps == 0:
        raise ValueError("an epoch without a single batch")
    return sums, n_steps


def train_epochs(
    epochs: int,
    run_epoch: Callable[[int], Mapping[str, Any]],
    validate: Callable[[int], Mapping[str, Any]],
    is_better: Callable[[Row, Row], bool],
    on_better: Callable[[Row], None] | None = None,
    after_epoch: Callable[[Row, LoopState, bool], None] | None = None,
    patience: int | None = None,
    min_epochs: int = 0,
    start: int = 1,
    state: LoopState | None = None,
    desc: str = "train",
    progress: bool = True,
) -> LoopState:
    """Run epochs ``start`` to ``epochs``: train, validate, keep the best, stop early.

    Each epoch's row is ``{"epoch", **run_epoch(epoch), **validate(epoch), "seconds"}`` (wall time
    of both). The first epoch is the best so far; a later one when ``is_better(row, best)``, and
    then ``on_better(row)`` runs (e.g. to save a checkpoint). With ``patience``, the run stops
    after ``patience`` epochs without a better one, but not before ``min_epochs``. After every
    epoch, ``after_epoch(row, state, stopped_early)`` runs (e.g. to write resume state and history).

    Args:
        epochs: the last epoch (1-based).
        state: a resumed run's state (``start`` is then its next epoch); a run marked done runs nothing.
        desc, progress: the tqdm bar.

    Returns:
        the final state: history, best row, stale epochs, done.

    Raises:
        ValueError: ``epochs`` < 1.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    state = state if state is not None else LoopState()
    for epoch in tqdm(range(start, epochs + 1), desc=desc, unit="epoch", disable=not progress or state.done):
        if state.done:
            break
        began = time.perf_counter()
        row: Row = {"epoch": epoch, **run_epoch(epoch)}
        row.update(validate(epoch))
        row["seconds"] = time.perf_counter() - began
        state.history.append(row)
        if state.best is None or is_better(row, state.best):
            state.best, state.stale = row, 0
            if on_better is not None:
                on_better(row)
        else:
            state.stale += 1
        stopped = patience is not None and state.stale >= patience and epoch >= min_epochs
        state.done = stopped or epoch == epochs
        if after_epoch is not None:
            after_epoch(row, state, stopped)
        if state.done:
            break
    return state


__all__ = ["LoopState", "Row", "step_sums", "train_epochs"]
