"""dvc.yaml must declare every package module a stage runs and every config key it reads, so that
`dvc repro` reruns exactly the stages a change touches."""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
DEFAULTS = {key: value for entry in yaml.safe_load((REPO / "conf/config.yaml").read_text())["defaults"]
            if isinstance(entry, dict) for key, value in entry.items() if key in {p.name for p in (REPO / "conf").iterdir()}}
#: OmegaConf calls that may take the whole config: they pick or resolve sections, they read no knob themselves.
WHOLE_CONFIG_CALLS = {"OmegaConf.resolve", "OmegaConf.masked_copy"}


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def songfeel_imports(path: Path) -> set[Path]:
    """Files of the songfeel modules ``path`` imports, transitively (the package root excepted)."""
    seen, todo = set(), [path]
    while todo:
        file = todo.pop()
        for node in ast.walk(ast.parse(file.read_text())):
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


def scripts(cmd: str) -> list[Path]:
    """The scripts a stage's command runs (commands may be chained with ``&&``)."""
    return sorted({REPO / word for word in cmd.split() if word.endswith(".py")})


def group_files(cmd: str, group: str) -> list[Path]:
    """The files of ``group`` that ``cmd`` composes: the default, or the choices of ``group=a,b``
    overrides, each with the files its own ``defaults`` list extends."""
    choices = {word.split("=", 1)[1] for word in cmd.split() if word.startswith(f"{group}=")}
    names = sorted(set.union(*(set(c.split(",")) for c in choices))) if choices else [DEFAULTS[group]]
    files, todo = [], [REPO / "conf" / group / f"{name}.yaml" for name in names]
    while todo:
        file = todo.pop()
        if file in files:
            continue
        files.append(file)
        extends = (yaml.safe_load(file.read_text()) or {}).get("defaults", [])
        todo += [file.parent / f"{name}.yaml" for name in extends if isinstance(name, str) and name != "_self_"]
    return files


def file_keys(file: Path) -> set[str]:
    return set(yaml.safe_load(file.read_text()) or {})


def config_reads(script: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """What a script hands its stage function: whole groups (``cfg.features``, or the groups named in
    ``OmegaConf.masked_copy(cfg, GROUPS)``) and single keys (``cfg.paths.manifest``, ``cfg.dataset.get("x")``).

    Raises:
        AssertionError: the script hands the whole config to anything but :data:`WHOLE_CONFIG_CALLS`.
    """
    tree = ast.parse(script.read_text())
    constants = {target.id: [element.value for element in node.value.elts] for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Tuple))
                 for target in node.targets if isinstance(target, ast.Name)}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    groups, keys = set(), set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id == "cfg") or isinstance(parents.get(node), ast.arg):
            continue
        parent = parents[node]
        if isinstance(parent, ast.Call):
            called = ast.unparse(parent.func)
            assert called in WHOLE_CONFIG_CALLS, f"{script.name} hands the whole config to {called}: give it sections"
            if called == "OmegaConf.masked_copy":
                groups |= set(constants[parent.args[1].id])
            continue
        if not isinstance(parent, ast.Attribute):
            continue
        group, outer = parent.attr, parents.get(parent)
        if isinstance(outer, ast.Attribute) and outer.attr == "get":
            keys.add((group, parents[outer].args[0].value))
        elif isinstance(outer, ast.Attribute):
            keys.add((group, outer.attr))
        elif group != "get":
            groups.add(group)
    return groups, keys


def declared_params(stage: str) -> dict[Path, set[str]]:
    declared = {}
    for entry in STAGES[stage].get("params", []):
        for file, names in entry.items():
            declared[REPO / file] = set(names)
    return declared


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    deps = [REPO / str(d).split()[0] for d in spec["deps"]]
    for script in scripts(spec["cmd"]):
        assert script in deps
        missing = [str(f.relative_to(REPO)) for f in songfeel_imports(script)
                   if not any(f == d or d in f.parents for d in deps)]
        assert not missing, f"stage {stage} runs {missing} but does not list them in deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_declare_every_key_it_reads(stage):
    spec = STAGES[stage]
    assert "conf/config.yaml" in spec["deps"]  # which group files are composed
    assert not any(str(d).startswith("conf/") and str(d) != "conf/config.yaml" for d in spec["deps"]), \
        "config is declared key by key under params, not as whole folders under deps"
    declared = declared_params(stage)
    for script in scripts(spec["cmd"]):
        groups, keys = config_reads(script)
        assert groups or keys, f"{script.name} reads no config"
        for group in groups:
            for file in group_files(spec["cmd"], group):
                missing = file_keys(file) - declared.get(file, set())
                assert not missing, f"stage {stage} reads {group} but does not declare {sorted(missing)} of {file.name}"
        for group, key in keys:
            for file in group_files(spec["cmd"], group):
                if key in file_keys(file):
                    assert key in declared.get(file, set()), f"stage {stage} reads {group}.{key}: not in params"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_declared_params_exist(stage):
    for file, names in declared_params(stage).items():
        assert file.is_file(), file
        assert names <= file_keys(file), f"{stage}: {sorted(names - file_keys(file))} are not keys of {file}"


def test_a_script_that_hands_over_the_whole_config_fails(tmp_path):
    script = tmp_path / "07_bad.py"
    script.write_text("def main(cfg):\n    run(cfg)\n")
    with pytest.raises(AssertionError, match="whole config"):
        config_reads(script)
    script.write_text("GROUPS = ['train']\ndef main(cfg):\n    run(OmegaConf.masked_copy(cfg, GROUPS), cfg.paths.runs,"
                      " cfg.dataset.get('hierarchy_column'))\n")
    assert config_reads(script) == ({"train"}, {("paths", "runs"), ("dataset", "hierarchy_column")})


def test_train_declares_both_choices_of_its_sweep():
    files = group_files(STAGES["train"]["cmd"], "window")
    assert {f.name for f in files} == {"chunked.yaml", "sliding.yaml"}
    assert {f.name for f in group_files(STAGES["train"]["cmd"], "loss")} == {"distill.yaml", "combined.yaml"}


def test_human_answer_files_are_deps_of_the_triplets_stage_and_in_git():
    """Stage 03 reads the configured answer files (the survey's export among them): DVC must see them change."""
    configured = yaml.safe_load((REPO / "conf/triplets/default.yaml").read_text())["human_answers"]
    assert "data/human/survey_answers.csv" in configured
    deps = [str(dep).split()[0] for dep in STAGES["triplets"]["deps"]]
    for path in configured:
        assert path in deps
        assert (REPO / path).is_file()  # kept in git, so a fresh clone's `dvc repro` finds it
