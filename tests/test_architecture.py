"""The architecture's rules (ARCHITECTURE.md), checked by import-linter's contracts in pyproject.toml:
the library never imports ``songfeel.stages``, and no import cycle exists among songfeel's packages."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def lint_imports(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_are_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_cycle_breaks_the_contract(tmp_path):
    """The contracts are not vacuous: a copy of the package where the library imports a stage breaks both."""
    subprocess.run(["cp", "-r", str(REPO / "songfeel"), str(REPO / "pyproject.toml"), str(tmp_path)], check=True)
    with (tmp_path / "songfeel" / "evaluate.py").open("a") as module:
        module.write("\nfrom songfeel.stages import download  # noqa: E402,F401\n")
    result = lint_imports(cwd=tmp_path)
    assert result.returncode != 0
    assert "songfeel.evaluate -> songfeel.stages.download" in result.stdout
    assert "0 kept, 2 broken" in result.stdout
