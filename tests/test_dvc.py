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


def _task_of(node: ast.AST) -> str | None:
    """``"structure"`` for an ``if cfg.task.name == "structure":`` test, else None."""
    if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)
            and ast.unparse(node.left) == "cfg.task.name" and isinstance(node.comparators[0], ast.Constant)):
        return node.comparators[0].value
    return None


def _other_task_nodes(tree: ast.AST, task: str) -> set[int]:
    """ids of the nodes inside ``if cfg.task.name == X:`` branches of a script, for every X other than ``task``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _task_of(node.test) not in (None, task):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def songfeel_imports(path: Path, task: str = "embedding") -> set[Path]:
    """Files of the songfeel modules ``path`` imports, transitively (the package root excepted).

    In the script itself, imports inside an ``if cfg.task.name == X:`` branch count only for
    the stages that run it with ``task=X`` (a script's default task is ``embedding``)."""
    seen, todo = set(), [path]
    while todo:
        file = todo.pop()
        tree = ast.parse(file.read_text())
        skipped = _other_task_nodes(tree, task) if file == path else set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("songfeel"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("songfeel")]
            for name in names:
                found = module_file(name)
                if found.is_file() and found not in seen and found != REPO / "songfeel/__init__.py":
                    seen.add(found)
                    todo.append(found)
    return seen


def stage_task(cmd: str) -> str:
    """The ``task=`` override of a stage's command, ``embedding`` without one."""
    return next((word.split("=", 1)[1] for word in cmd.split() if word.startswith("task=")), "embedding")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    script = REPO / spec["cmd"].split()[1]
    deps = [REPO / d for d in spec["deps"]]
    assert script in deps
    missing = [str(f.relative_to(REPO)) for f in songfeel_imports(script, stage_task(spec["cmd"]))
               if not any(f == d or d in f.parents for d in deps)]
    assert not missing, f"stage {stage} runs {missing} but does not list them in deps"


def test_a_task_branch_counts_only_for_its_own_stages():
    script = REPO / "04_train.py"
    structure = REPO / "songfeel/structure/stages.py"
    assert structure in songfeel_imports(script, "structure")
    assert structure not in songfeel_imports(script, "embedding")
    assert REPO / "songfeel/train.py" in songfeel_imports(script, "embedding")
    assert REPO / "songfeel/train.py" not in songfeel_imports(script, "structure")
    assert stage_task("python 04_train.py task=structure") == "structure"
    assert stage_task("python 04_train.py --multirun window=chunked,sliding") == "embedding"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_reads_its_config_groups(stage):
    deps = STAGES[stage]["deps"]
    assert "conf/config.yaml" in deps and "conf/paths" in deps


def test_human_answer_files_are_deps_of_the_triplets_stage_and_in_git():
    """Stage 03 reads the configured answer files (the survey's export among them): DVC must see them change."""
    configured = yaml.safe_load((REPO / "conf/triplets/default.yaml").read_text())["human_answers"]
    assert "data/human/survey_answers.csv" in configured
    deps = [str(dep).split()[0] for dep in STAGES["triplets"]["deps"]]
    for path in configured:
        assert path in deps
        assert (REPO / path).is_file()  # kept in git, so a fresh clone's `dvc repro` finds it
