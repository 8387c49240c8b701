"""Every shell command in every generated README works as written.

The README of each task (on cpu, and on multi-gpu where the launcher differs) is rendered
at collection time and each line of its ```bash blocks becomes a test case. A command runs
offline on this CPU machine with `configs/smoke.yaml` in place of `configs/train.yaml`
(the same keys, a tiny local model and a few steps) and the sample files in place of
`/path/to/...`; it must exit 0. Commands not run here each match a stated reason in
CANNOT_RUN (`test_every_command_not_run_here_has_a_reason` lists them); `pytest -q`, the
project's own smoke test, runs for every combination in tests/test_smoke_projects.py.
"""

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

from scaffold.answers import collect
from scaffold.render import render_project

TASKS = ("classification", "sft", "dpo", "rlhf", "pretraining", "inference")
# multi-gpu starts training through launch/torchrun.sh; inference has no launcher.
COMBOS = [(task, "cpu") for task in TASKS] + [
    (task, "multi-gpu") for task in TASKS if task != "inference"
]
# Why a command cannot run on this machine: (pattern, reason used in the test id).
CANNOT_RUN = [
    (r"^pip install|^python -m venv|^\. \.venv", "installs-from-pypi"),
    (r"^sbatch ", "needs-slurm"),
    (r"^ray start|MASTER_ADDR=node0", "needs-several-nodes"),
    (r"--resume runs/", "names-a-checkpoint-of-a-full-run"),
    (r"--model\.name \.\./runs/my-sft-run", "needs-another-projects-model"),
    (r"^pytest -q$", "run-by-tests/test_smoke_projects.py"),
]


class Command(NamedTuple):
    combo: tuple[str, str]
    line: str
    reason: str | None  # why it cannot run here, or None


@functools.cache
def rendered(task: str, hardware: str) -> Path:
    """A render per combination, made once (at collection) and only read afterwards."""
    given = {"project_name": "demo", "task": task, "hardware": hardware, "scale": "small"}
    if hardware == "multi-gpu":
        given |= {"gpus": 2, "nodes": 1}
    target = Path(tempfile.mkdtemp(prefix="readme-")) / f"{task}-{hardware}"
    render_project(collect(given), target)
    return target


def shell_commands(readme: str) -> list[str]:
    """The command lines of the ```bash blocks, comments and continuations resolved."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", readme, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def readme_commands() -> list[Command]:
    found = []
    for combo in COMBOS:
        for line in shell_commands((rendered(*combo) / "README.md").read_text()):
            reason = next((why for pattern, why in CANNOT_RUN if re.search(pattern, line)), None)
            if line not in [c.line for c in found if c.combo == combo]:
                found.append(Command(combo, line, reason))
    return found


COMMANDS = readme_commands()


def case_id(command: Command) -> str:
    words = re.sub(r"[^\w./=-]+", "_", command.line)[:70]
    return f"{'-'.join(command.combo)}::{words}"


def runnable(line: str, project: Path) -> str:
    """The README's command as run here: smoke config, sample data for /path/to/."""
    line = line.replace("configs/train.yaml", "configs/smoke.yaml")
    line = line.replace("/path/to/", f"{project}/data/")
    if line.startswith("bash launch/"):
        line = f"CONFIG=configs/smoke.yaml {line}"
    return line


def run(line: str, project: Path) -> subprocess.CompletedProcess:
    # As a user runs it: launch/torchrun.sh's default rendezvous port too, which runs in
    # other xdist workers at the same time must not share.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", line],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def prepared(command: Command, tmp_path: Path) -> Path:
    """A copy of the project with what the smoke config reads: a tiny local model (built
    offline by the project's own tests/tiny_model.py) or the tokenized sample corpus."""
    task, hardware = command.combo
    project = tmp_path / "demo"
    shutil.copytree(rendered(task, hardware), project)
    if task == "pretraining":
        corpus = (project / "data" / "corpus.txt").read_text().split("\n\n")
        lines = [json.dumps({"text": doc}) for doc in corpus if doc.strip()]
        (project / "data" / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        if not command.line.startswith("python prepare_data.py"):
            setup = run("python prepare_data.py --config configs/smoke.yaml", project)
            assert setup.returncode == 0, setup.stderr[-3000:]
        return project
    # Each fine-tuning project builds its own tiny model; inference ships no model builder,
    # so a chat model from the sft project serves.
    builder = project / "tests" / "tiny_model.py"
    if not builder.is_file():
        builder = rendered("sft", "cpu") / "tests" / "tiny_model.py"
    setup = run(f"python {shlex.quote(str(builder))} runs/tiny-model", project)
    assert setup.returncode == 0, setup.stderr[-3000:]
    return project


def trains(line: str) -> bool:
    return bool(re.search(r"train\.py|infer\.py|prepare_data\.py|torchrun|^pytest", line))


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, marks=[pytest.mark.smoke] if trains(c.line) else [])
        for c in COMMANDS
        if not c.reason
    ],
    ids=case_id,
)
def test_readme_command_exits_0(command, tmp_path):
    project = prepared(command, tmp_path)
    line = runnable(command.line, project)
    if re.search(r"--resume$", line):  # continues a run: make one first
        first = run(line.removesuffix("--resume").strip(), project)
        assert first.returncode == 0, first.stderr[-3000:]
    result = run(line, project)
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr


def test_every_command_not_run_here_has_a_reason():
    not_run = {c.line: c.reason for c in COMMANDS if c.reason}
    reasons = {why for _, why in CANNOT_RUN}
    assert not_run and set(not_run.values()) <= reasons
    # Every reason still matches a README line: no stale exemption.
    assert set(not_run.values()) == reasons, reasons - set(not_run.values())


def test_every_combination_has_commands_that_run_here():
    for combo in COMBOS:
        assert any(c.combo == combo and not c.reason for c in COMMANDS), combo


def test_multi_gpu_readmes_never_start_training_with_plain_python():
    # train.py exits "launch with torchrun" on a multi-gpu project.
    for c in COMMANDS:
        if c.combo[1] == "multi-gpu":
            assert not c.line.startswith("python train.py"), c.line
