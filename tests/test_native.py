"""Native baselines that crash: the probe in a subprocess, and work in workers whose death is caught.

The crashes are real signals (``os.kill`` of the process itself, as a crashing library would die), and
where Debian's qemu-user is installed, the real bliss wheel on an emulated CPU without AVX-512.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from songfeel import native
from songfeel.baselines import bliss
from songfeel.native import (
    NativeBaselineUnavailable,
    NativeLibrary,
    WorkerCrash,
    exit_cause,
    map_in_workers,
    probe,
)
from tests.native_support import square_or_die

#: A CPU with AVX2, FMA and BMI2 but no AVX-512, as every AMD CPU before Zen 4 (qemu's TCG has no AVX-512).
NO_AVX512 = ["qemu-x86_64", "-cpu", "Haswell"]


def stand_in(probe_code: str, **needs) -> NativeLibrary:
    """A library named as the installed bliss-audio, with another probe."""
    return NativeLibrary("stand-in", "bliss-audio", probe_code, needs.get("cpu_needs", {}))


def killed_by(name: str) -> str:
    return f"import os, signal; os.kill(os.getpid(), signal.{name})"


@pytest.mark.parametrize("name, words", [("SIGILL", "illegal instruction, SIGILL"),
                                         ("SIGSEGV", "segmentation fault, SIGSEGV"),
                                         ("SIGABRT", "abort, SIGABRT")])
def test_a_real_signal_is_put_in_words(name, words):
    done = subprocess.run([sys.executable, "-c", killed_by(name)], check=False)
    assert done.returncode == -signal.Signals[name].value
    assert native.signal_name(done.returncode) == name and exit_cause(done.returncode) == words
    # a shell reports the same death as 128 + n
    assert exit_cause(128 + signal.Signals[name].value) == words
    assert exit_cause(0) == "exit status 0" and native.signal_name(3) is None


def test_a_probe_that_dies_by_sigill_names_the_package_the_instruction_set_and_the_cpu():
    version = stand_in("").version()
    cause = probe(stand_in(killed_by("SIGILL"), cpu_needs={version: "AVX-512"}))
    assert cause == f"bliss-audio {version} needs AVX-512 (illegal instruction, SIGILL); this CPU lacks it"
    unknown = probe(stand_in(killed_by("SIGILL") + " "))  # no known need: still says what happened
    assert unknown.startswith(f"bliss-audio {version} stopped on an instruction this CPU lacks (illegal instruction, SIGILL)")


def test_a_probe_that_segfaults_raises_or_hangs_is_a_cause_and_a_clean_one_is_none():
    assert "crashed the process (segmentation fault, SIGSEGV)" in probe(stand_in(killed_by("SIGSEGV")))
    assert probe(stand_in("raise SystemExit('no audio device')")).endswith("(exit status 1): no audio device")
    assert "did not finish its 1 s probe" in probe(stand_in("import time; time.sleep(30)"), timeout=1)
    assert probe(stand_in("import bliss_audio")) is None
    assert probe(NativeLibrary("ghost", "no-such-package-xyz", "pass")) == "no-such-package-xyz is not installed"
    with pytest.raises(NativeBaselineUnavailable, match="stand-in: not measured on this machine: .*SIGILL") as caught:
        native.require(stand_in(killed_by("SIGILL") + "  "))
    assert caught.value.signal_name == "SIGILL" and caught.value.package == "bliss-audio"


def test_the_probe_runs_once_per_process(monkeypatch):
    library = stand_in("import bliss_audio  # once")
    assert probe(library) is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("probed twice"))
    assert probe(library) is None


def test_the_probe_launcher_comes_from_the_environment(monkeypatch):
    # a launcher that dies by SIGILL itself: the shell gets the interpreter's command as its arguments
    monkeypatch.setenv(native.PROBE_LAUNCHER_ENV, "sh -c 'kill -ILL $$' sh")
    assert "illegal instruction, SIGILL" in probe(stand_in("pass  # launched"))


def test_workers_give_every_result_and_a_dead_worker_costs_only_its_call():
    calls = [(i, "SIGSEGV" if i == 3 else None) for i in range(6)]
    results = dict(map_in_workers(square_or_die, calls, n_jobs=2))
    assert sorted(results) == list(range(6))
    assert {i: r for i, r in results.items() if i != 3} == {i: i * i for i in range(6) if i != 3}
    assert results[3] == WorkerCrash("SIGSEGV", "segmentation fault, SIGSEGV")
    # one worker is still a worker process: the crash does not reach this process
    assert dict(map_in_workers(square_or_die, [(5, "SIGABRT"), (4, None)], n_jobs=1)) == {
        0: WorkerCrash("SIGABRT", "abort, SIGABRT"), 1: 16}


def test_a_library_that_kills_every_worker_is_unavailable():
    library = stand_in("", cpu_needs={stand_in("").version(): "AVX-512"})
    with pytest.raises(NativeBaselineUnavailable, match=r"needs AVX-512 \(illegal instruction, SIGILL\)") as caught:
        list(map_in_workers(square_or_die, [(i, "SIGILL") for i in range(5)], n_jobs=2, library=library))
    assert caught.value.method == "stand-in"


# --- the real bliss --------------------------------------------------------------------------------

def test_a_bliss_worker_that_segfaults_on_one_file_skips_that_file_only(bliss_runs, demo_paths, tmp_path):
    from tests.native_support import POISON, analyse_or_segfault

    poison = tmp_path / f"{POISON}.opus"
    shutil.copy(demo_paths[0], poison)
    paths = {"a": demo_paths[1], "poisoned": str(poison), "b": demo_paths[2]}
    features, skipped = bliss.bliss_features(paths, n_jobs=2, analyse=analyse_or_segfault)
    assert list(features.index) == ["a", "b"] and features.shape == (2, 23)
    assert skipped.to_dict(orient="records") == [{
        "track_id": "poisoned", "path": str(poison),
        "error": "bliss crashed its worker process on it: segmentation fault, SIGSEGV"}]


def test_bliss_on_a_cpu_without_avx512_is_named_unavailable(demo_paths):
    """The real bliss-audio wheel on an emulated CPU with AVX2 but without AVX-512 (qemu-user)."""
    if shutil.which(NO_AVX512[0]) is None:
        from conftest import skip_or_fail

        skip_or_fail("qemu-x86_64 not found (Debian's qemu-user)")
    cause = bliss.bliss_available(NO_AVX512)
    version = bliss.BLISS.version()
    if version in bliss.BLISS.cpu_needs:
        assert cause == f"bliss-audio {version} needs AVX-512 (illegal instruction, SIGILL); this CPU lacks it"
    else:  # a wheel built for a baseline x86-64 runs there too
        assert cause is None


def test_joblib_still_works_in_this_process_after_a_worker_died():
    from joblib import Parallel, delayed

    assert dict(map_in_workers(square_or_die, [(2, None), (3, "SIGSEGV")], n_jobs=2))[0] == 4
    assert Parallel(n_jobs=2)(delayed(square_or_die)(i) for i in range(4)) == [0, 1, 4, 9]
