"""dvc.yaml must list every package module a stage runs, so that `dvc repro` stays honest."""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def songfeel_imports(path: Path) -> set[Path]:
    """Files of the songfeel modules ``path`` imports, transitively (the package root excepted)."""
    seen, todo = set(), [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("songfeel"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("songfeel")]
            for name in names:
                file = module_file(name)
                if file.is_file() and file not in seen and file != REPO / "songfeel/__init__.py":
                    seen.add(file)
                    todo.append(file)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    script = REPO / spec["cmd"].split()[1]
    deps = [REPO / d for d in spec["deps"]]
    assert script in deps
    missing = [str(f.relative_to(REPO)) for f in songfeel_imports(script)
               if not any(f == d or d in f.parents for d in deps)]
    assert not missing, f"stage {stage} runs {missing} but does not list them in deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_reads_its_config_groups(stage):
    deps = STAGES[stage]["deps"]
    assert "conf/config.yaml" in deps and "conf/paths" in deps
