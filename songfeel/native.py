"""Native baselines that may crash the process: probe them in a subprocess, run them in workers.

Some baselines are compiled libraries (bliss-rs through ``bliss-audio``). When one of
them dies by a signal, no ``except`` can catch it: the wheel of ``bliss-audio`` 0.2.0 on
PyPI was built for AVX-512, and on a CPU without it the first analysis stops the whole
Python process with SIGILL ("Illegal instruction"). This module keeps such a crash out
of the pipeline in two steps:

* :func:`probe` runs a short check of the library (:class:`NativeLibrary`) in a fresh
  interpreter, once per process: about 0.3 s for bliss. A probe that dies by a signal,
  fails or hangs makes the baseline unavailable (:class:`NativeBaselineUnavailable`),
  with the cause in words, e.g. "bliss-audio 0.2.0 needs AVX-512 (illegal instruction,
  SIGILL); this CPU lacks it". Nothing is guessed from ``/proc/cpuinfo``: only running
  the code tells whether it runs.
* :func:`map_in_workers` runs the real work in worker processes (loky, as joblib does),
  so that a crash on one file (a decoder bug, say) costs that file, not the run: after a
  worker dies, the files not yet done are retried one at a time, each crash names its
  file and signal, and a library that crashes on every file becomes unavailable.

Signals and their words: :func:`exit_cause`. A Rust panic is no signal: PyO3 raises it as
``pyo3_runtime.PanicException`` (a BaseException), which the work function itself turns
into a per-file error (see :func:`songfeel.baselines.bliss.bliss_analyse`).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata

from joblib import effective_n_jobs
from tqdm import tqdm

from songfeel.errors import SongfeelError

log = logging.getLogger(__name__)

#: Signals that a crashing native library dies by, in words.
SIGNAL_WORDS: dict[int, str] = {
    signal.SIGILL: "illegal instruction",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "abort",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic error",
    signal.SIGKILL: "killed, e.g. by the kernel for lack of memory",
}

#: What the results say of a baseline that could not run here.
NOT_MEASURED = "not measured on this machine"

#: Environment variable holding a command that every probe runs under (split as a shell would), e.g.
#: ``qemu-x86_64 -cpu Haswell`` (Debian's qemu-user) to see how songfeel fares on a CPU without
#: AVX-512: each native baseline is then reported as it would be there.
PROBE_LAUNCHER_ENV = "SONGFEEL_PROBE_LAUNCHER"

#: Seconds a probe may take before it counts as hung.
PROBE_TIMEOUT_SECONDS = 60.0


def not_measured_note(cause: str) -> str:
    """The note of a baseline that could not run here: ``"not measured on this machine: <cause>"``."""
    return f"{NOT_MEASURED}: {cause}"


class NativeBaselineUnavailable(SongfeelError):
    """A native baseline cannot run on this machine; it is reported and left out.

    Attributes:
        method: the baseline's method name (e.g. ``"bliss"``).
        package: the PyPI distribution (e.g. ``"bliss-audio"``).
        version: its installed version ('' if not installed).
        cause: why, in words (e.g. "bliss-audio 0.2.0 needs AVX-512 (illegal
            instruction, SIGILL); this CPU lacks it").
        signal_name: the signal that killed the probe or workers (``"SIGILL"``), or None.
    """

    def __init__(self, method: str, package: str, version: str, cause: str, signal_name: str | None = None) -> None:
        self.method, self.package, self.version = method, package, version
        self.cause, self.signal_name = cause, signal_name
        super().__init__(f"{method}: {not_measured_note(cause)}")


@dataclass(frozen=True)
class NativeLibrary:
    """A compiled library behind a baseline, and how to check that it runs here.

    Attributes:
        method: the baseline's method name, as in the results (``"bliss"``).
        package: the PyPI distribution whose version is reported (``"bliss-audio"``).
        probe_code: Python source run by :func:`probe` in a fresh interpreter; it must
            exercise the library's real work on a tiny input and exit 0.
        cpu_needs: installed version -> the instruction set its wheel is known to need,
            named in the cause when the probe dies by SIGILL (e.g. ``{"0.2.0": "AVX-512"}``).
    """

    method: str
    package: str
    probe_code: str
    cpu_needs: Mapping[str, str] = field(default_factory=dict)

    def version(self) -> str:
        """The installed version of :attr:`package`, or '' when it is not installed."""
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return ""


def signal_name(returncode: int | None) -> str | None:
    """``"SIGILL"`` for a process killed by SIGILL (``returncode`` -4, or 128 + 4 from a shell), else None."""
    if returncode is None or returncode == 0:
        return None
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def exit_cause(returncode: int | None) -> str:
    """A process's end in words: ``"illegal instruction, SIGILL"``, ``"exit status 3"``, ``"no exit status"``."""
    name = signal_name(returncode)
    if name is not None:
        words = SIGNAL_WORDS.get(signal.Signals[name])
        return f"{words}, {name}" if words else f"killed by {name}"
    return "no exit status" if returncode is None else f"exit status {returncode}"


def _crash_cause(library: NativeLibrary, version: str, returncode: int | None, detail: str) -> str:
    """The cause of a probe or worker death, naming the package, its version and the signal."""
    name = signal_name(returncode)
    label = f"{library.package} {version}".strip()
    if name == "SIGILL":
        need = library.cpu_needs.get(version)
        if need:
            return f"{label} needs {need} ({exit_cause(returncode)}); this CPU lacks it"
        return (f"{label} stopped on an instruction this CPU lacks ({exit_cause(returncode)}): "
                "its wheel was built for a newer instruction set")
    cause = f"{label} crashed the process ({exit_cause(returncode)})"
    return f"{cause}: {detail}" if detail else cause


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


_probe_results: dict[tuple, str | None] = {}


def probe(library: NativeLibrary, launcher: Sequence[str] = (), timeout: float = PROBE_TIMEOUT_SECONDS,
          refresh: bool = False) -> str | None:
    """Run ``library.probe_code`` in a fresh Python interpreter; the cause if it cannot run here, else None.

    The result is cached per process (library, version and launcher), so a run pays for
    one probe (bliss: about 0.3 s).

    Args:
        library: the library and its probe.
        launcher: a command the interpreter runs under, e.g. ``["qemu-x86_64", "-cpu",
            "Haswell"]`` to see how a CPU without AVX-512 fares; empty: the command in
            the environment variable :data:`PROBE_LAUNCHER_ENV`, if set, else none.
        timeout: seconds before the probe counts as hung.
        refresh: probe again even if this process already did.

    Returns:
        None if the probe exited 0; else the cause in words: the package is not
        installed, it died by a signal (SIGILL: the instruction set it needs), it
        raised (its last line of stderr) or it hung.
    """
    launcher = tuple(launcher) or tuple(shlex.split(os.environ.get(PROBE_LAUNCHER_ENV, "")))
    version = library.version()
    key = (library.method, library.package, library.probe_code, version, tuple(launcher))
    if not refresh and key in _probe_results:
        return _probe_results[key]
    if not version:
        cause = f"{library.package} is not installed"
    else:
        command = [*launcher, sys.executable, "-c", library.probe_code]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            cause = f"{library.package} {version} did not finish its {timeout:.0f} s probe (hung)"
        except OSError as exc:
            cause = f"cannot start the probe of {library.package} ({' '.join(command[:1])}): {exc}"
        else:
            cause = None if done.returncode == 0 else _crash_cause(library, version, done.returncode,
                                                                     _last_line(done.stderr))
    if cause is None:
        log.info("%s: %s %s runs on this CPU (probe passed)", library.method, library.package, version)
    else:
        log.warning("%s: %s", library.method, not_measured_note(cause))
    _probe_results[key] = cause
    return cause


def require(library: NativeLibrary, launcher: Sequence[str] = ()) -> None:
    """:func:`probe` the library; raise if it cannot run here.

    Raises:
        NativeBaselineUnavailable: the probe failed (the cause in words).
    """
    cause = probe(library, launcher)
    if cause is not None:
        raise NativeBaselineUnavailable(library.method, library.package, library.version(), cause,
                                        _signal_in(cause))


def _signal_in(text: str) -> str | None:
    found = re.search(r"\b(SIG[A-Z]+)\b", text)
    return found.group(1) if found else None


def _worker_signal(exc: BaseException) -> str | None:
    """The signal named in loky's TerminatedWorkerError ("The exit codes of the workers are {SIGILL(-4)}")."""
    return _signal_in(str(exc))


def _executor(n_workers: int):
    # loky's process pool (https://github.com/joblib/loky), the one behind joblib's default backend: its
    # TerminatedWorkerError names the workers' exit signals. A pool of our own, not loky's reusable one,
    # which joblib.Parallel shares and expects to have set up itself.
    from joblib.externals.loky import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=n_workers)


@dataclass(frozen=True)
class WorkerCrash:
    """One call whose worker process died.

    Attributes:
        signal_name: the signal (``"SIGSEGV"``), or None when the exit code is unknown.
        cause: the death in words, e.g. "segmentation fault, SIGSEGV".
    """

    signal_name: str | None
    cause: str


def _crash(exc: BaseException) -> WorkerCrash:
    """The :class:`WorkerCrash` of a broken pool, with the signal that killed its worker when loky names it."""
    name = _worker_signal(exc)
    if name in signal.Signals.__members__:
        return WorkerCrash(name, exit_cause(-signal.Signals[name].value))
    return WorkerCrash(None, f"the worker process died: {_last_line(str(exc))}")


def map_in_workers(function: Callable, calls: Sequence[tuple], n_jobs: int = 1, desc: str = "", unit: str = "file",
                   library: NativeLibrary | None = None, max_crashes_in_a_row: int = 2) -> Iterator[tuple[int, object]]:
    """Run ``function(*calls[i])`` in worker processes; a worker's death costs only its call.

    Every call runs in a loky worker process, also with ``n_jobs=1``, so a native crash
    (SIGILL, SIGSEGV, SIGABRT, ...) never reaches this process. When a worker dies, the
    pool breaks and the calls not yet done are retried one at a time in a fresh worker, so
    each crash is tied to its call. Yields in completion order, with a tqdm progress bar.

    Args:
        function: an importable (picklable) function; it should catch its own errors.
        calls: the argument tuples.
        n_jobs: worker processes (-1: one per core).
        desc: the progress bar's label.
        unit: the progress bar's unit.
        library: the native library behind ``function``, to name it when it crashes on
            every call.
        max_crashes_in_a_row: after this many calls in a row, retried alone, die by the
            same signal with no call succeeding, the library itself is taken to be broken.

    Yields:
        ``(i, result)`` per call: ``function``'s return value, or a :class:`WorkerCrash`
        for a call whose worker died.

    Raises:
        NativeBaselineUnavailable: every retried call so far died by the same signal
            (``max_crashes_in_a_row`` of them), so no file can be analysed.
    """
    if not calls:
        return
    n_workers = max(1, min(effective_n_jobs(n_jobs), len(calls)))
    done: set[int] = set()
    broken: BaseException | None = None
    with tqdm(total=len(calls), desc=desc, unit=unit) as progress:
        executor = _executor(n_workers)
        try:
            futures = {executor.submit(function, *args): i for i, args in enumerate(calls)}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    broken = exc
                    continue
                done.add(futures[future])
                progress.update()
                yield futures[future], result
        finally:
            executor.shutdown(wait=False)  # idle workers exit on their own; nothing waits for them
        if broken is None:
            return
        remaining = [i for i in range(len(calls)) if i not in done]
        log.warning("%s: a worker process died (%s); retrying the %d calls not done one at a time",
                    desc or getattr(function, "__name__", "worker"), _worker_signal(broken) or broken, len(remaining))
        crashes: list[WorkerCrash] = []
        any_success = bool(done)
        alone = None  # one worker, kept while its calls succeed, replaced after each crash
        try:
            for i in remaining:
                alone = alone or _executor(1)
                try:
                    result = alone.submit(function, *calls[i]).result()
                except BrokenProcessPool as exc:
                    result = _crash(exc)
                    alone.shutdown(wait=False)
                    alone = None
                progress.update()
                if isinstance(result, WorkerCrash):
                    crashes.append(result)
                    if not any_success and library is not None:
                        _raise_if_broken(library, crashes, max_crashes_in_a_row)
                else:
                    any_success = True
                yield i, result
        finally:
            if alone is not None:
                alone.shutdown(wait=True)



def _raise_if_broken(library: NativeLibrary, crashes: list[WorkerCrash], max_crashes_in_a_row: int) -> None:
    """Raise when the last ``max_crashes_in_a_row`` calls, with none succeeding, died by one signal.

    Raises:
        NativeBaselineUnavailable: the library cannot run on this machine (named with the cause).
    """
    same = {c.signal_name for c in crashes[-max_crashes_in_a_row:]}
    if len(crashes) < max_crashes_in_a_row or len(same) != 1:
        return
    name = same.pop()
    version = library.version()
    returncode = -signal.Signals[name].value if name else None
    cause = _crash_cause(library, version, returncode,
                         f"on each of the {len(crashes)} files tried alone, so it cannot run here")
    raise NativeBaselineUnavailable(library.method, library.package, version, cause, name)

__all__ = [
    "NOT_MEASURED", "NativeBaselineUnavailable", "NativeLibrary", "PROBE_LAUNCHER_ENV", "PROBE_TIMEOUT_SECONDS", "SIGNAL_WORDS", "WorkerCrash",
    "exit_cause", "map_in_workers", "not_measured_note", "probe", "require", "signal_name",
]
