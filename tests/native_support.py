"""Stand-in native workers for the isolation tests: functions that kill their own process by a real signal.

They live in an importable module (not in a test) because loky's workers import them by name.
"""

from __future__ import annotations

import os
import signal

from songfeel.baselines.bliss import bliss_analyse

#: File names on which :func:`analyse_or_segfault` kills its worker.
POISON = "poison"


def die_by(signal_name: str) -> None:
    """Kill this process by the named signal, as a crashing native library would (no Python cleanup)."""
    os.kill(os.getpid(), signal.Signals[signal_name])


def sigill_on_every_file(track_id: str, path: str) -> dict:
    """A bliss worker on a CPU without the instruction set its wheel needs: SIGILL on the first file."""
    die_by("SIGILL")
    raise AssertionError("unreachable")


def analyse_or_segfault(track_id: str, path: str) -> dict:
    """The real bliss analysis, except that a file whose name holds :data:`POISON` kills the worker (SIGSEGV)."""
    if POISON in os.path.basename(path):
        die_by("SIGSEGV")
    return bliss_analyse(track_id, path)


def square_or_die(value: int, signal_name: str | None = None) -> int:
    """``value ** 2``, or death by ``signal_name`` when it is given."""
    if signal_name:
        die_by(signal_name)
    return value * value
