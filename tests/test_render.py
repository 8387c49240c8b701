"""Every valid combination renders into a clean, minimal project."""

import ast
import re
import subprocess
import sys

import pytest
import yaml
from combinations import valid_combinations

COMBOS = valid_combinations()
IDS = ["-".join(c) for c in COMBOS]


def python_files(project):
    return sorted(p for p in project.rglob("*.py") if ".venv" not in p.parts)


def text_files(project):
    return sorted(p for p in project.rglob("*") if p.is_file() and p.suffix != ".bin")


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_project_compiles_and_is_lint_clean(render, task, hardware, scale):
    project = render(task, hardware, scale)
    for path in python_files(project):
        compile(path.read_text(), str(path), "exec")
    for tool in (["ruff", "check", "--no-cache", "."], ["black", "--check", "--quiet", "."]):
        result = subprocess.run(
            [sys.executable, "-m", *tool], cwd=project, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{' '.join(tool)}:\n{result.stdout}{result.stderr}"


# A Jinja tag as the templates write them ("{{ x }}", "{%- if"), not an f-string's "{{" or "%}".
JINJA = re.compile(r"\{%[-+]?\s|\s[-+]?%\}|\{\{\s|\s\}\}|\{#")


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_rendered_files_have_no_leftover_blank_runs_or_jinja(render, task, hardware, scale):
    project = render(task, hardware, scale)
    for path in text_files(project):
        text = path.read_text()
        assert "\n\n\n\n" not in text, f"{path.name} has a run of blank lines"
        if path.suffix != ".py":  # black already owns Python blank lines
            assert "\n\n\n" not in text, f"{path.name} has a run of blank lines"
        # Tests may build chat templates, which are Jinja by nature.
        if path.name != ".copier-answers.yml" and path.parent.name != "tests":
            assert not JINJA.search(text), f"{path.name} has leftover Jinja"
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{path.name} ending"


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_yaml_files_parse(render, task, hardware, scale):
    project = render(task, hardware, scale)
    for path in [*project.glob("configs/*.yaml"), *project.rglob("*.yml")]:
        assert yaml.safe_load(path.read_text()) is not None, path


DISTRIBUTED = re.compile(
    r"torch\.distributed|init_process_group|DistributedDataParallel|DistributedSampler"
    r"|fully_shard|FullyShardedDataParallel|destroy_process_group|torchrun|LOCAL_RANK"
)


@pytest.mark.parametrize(
    "task, hardware, scale", [c for c in COMBOS if c[1] != "multi-gpu"], ids=lambda v: v
)
def test_single_device_projects_contain_no_distributed_code(render, task, hardware, scale):
    # R-DDP-ONLY-MULTI: not even dead branches, in code, configs, scripts or docs.
    project = render(task, hardware, scale)
    assert not (project / "launch").exists()
    for path in text_files(project):
        found = DISTRIBUTED.findall(path.read_text())
        assert not found, f"{path.relative_to(project)} mentions {found}"


# `bf16: false` is allowed: TRL configs default to bf16, so CPU/MPS configs must turn it off.
OTHER_HARDWARE = {
    "cpu": re.compile(r"\bcuda\b|\bmps\b|autocast|bf16(?!: false)|bfloat16|pin_memory=True", re.I),
    "mps": re.compile(r"\bcuda\b|autocast|fp16|bf16(?!: false)|bfloat16|pin_memory=True", re.I),
    "cuda": re.compile(r"\bmps\b", re.I),
    "multi-gpu": re.compile(r"\bmps\b", re.I),
}


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_code_has_no_branches_for_other_hardware(render, task, hardware, scale):
    project = render(task, hardware, scale)
    for path in [*python_files(project), *project.glob("configs/*.yaml")]:
        if path.parent.name == "tests":
            continue  # tests may name the device they check against
        found = OTHER_HARDWARE[hardware].findall(path.read_text())
        assert not found, f"{path.relative_to(project)} ({hardware}) mentions {found}"


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_every_third_party_import_is_pinned(render, task, hardware, scale):
    # R-PINNED: requirements.txt names every package the project imports.
    project = render(task, hardware, scale)
    pinned = {}
    lines = [line for f in project.glob("requirements*.txt") for line in f.read_text().splitlines()]
    for line in lines:
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not pinned with ==: {line}"
            pinned[name.lower()] = version
    import_names = {
        "yaml": "pyyaml",
        "sklearn": "scikit-learn",
        "nvmath": "nvmath-python",
        "cudnn": "nvidia-cudnn-frontend",
    }
    local = {p.stem for p in project.rglob("*.py")} | {"tests"}
    optional = {"wandb"}  # imported lazily, only when the config turns it on
    for path in python_files(project):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in local or top in optional:
                continue
            assert import_names.get(top, top) in pinned, f"{path.name} imports unpinned {top}"


@pytest.mark.parametrize("task, hardware, scale", COMBOS, ids=IDS)
def test_outputs_are_named_after_the_project(render, task, hardware, scale):
    # R-OUTPUT-NAME
    project = render(task, hardware, scale)
    config = (project / "configs" / "train.yaml").read_text()
    assert "runs/demo" in config
