"""R-CONFIG, R-DATA-VALIDATION: every mistake a user can make in a config or a data file is
one clear message naming the file, key or flag, a non-zero exit, and no traceback.

Each case runs the rendered project's entry point as a user would, with the smoke config.
These failures happen before any model is loaded, so a task's cases run side by side.
`--debug` adds the traceback; on multi-gpu, torchrun adds one line naming the failed rank.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from trainable import ENV, ready, rendezvous, run_smoke


@dataclass
class Case:
    name: str
    args: list[str]
    expect: list[str]  # all of these appear in the output
    files: dict[str, str] = field(default_factory=dict)  # written into tmp_path first


@dataclass
class Task:
    entry: str  # the script a user runs
    lr: str  # dotted keys of the task's config
    batch_size: str
    steps: str | None
    data_key: str
    row: dict  # one valid data row
    columns: tuple[str, ...]


TASKS = {
    "classification": Task(
        "train.py",
        "training.learning_rate",
        "training.per_device_train_batch_size",
        "training.max_steps",
        "data.train_file",
        {"text": "good", "label": "positive"},
        ("text", "label"),
    ),
    "sft": Task(
        "train.py",
        "training.learning_rate",
        "training.per_device_train_batch_size",
        "training.max_steps",
        "data.train_file",
        {"prompt": "Hi", "completion": "Hello"},
        ("prompt", "completion"),
    ),
    "dpo": Task(
        "train.py",
        "training.learning_rate",
        "training.per_device_train_batch_size",
        "training.max_steps",
        "data.train_file",
        {"prompt": "Hi", "chosen": "Hello", "rejected": "Go"},
        ("prompt", "chosen", "rejected"),
    ),
    "rlhf": Task(
        "train.py",
        "policy_training.learning_rate",
        "reward_training.per_device_train_batch_size",
        "policy_training.max_steps",
        "data.preference_file",
        {"prompt": "Hi", "chosen": "Hello", "rejected": "Go"},
        ("prompt", "chosen", "rejected"),
    ),
    "pretraining": Task(
        "train.py",
        "training.lr",
        "training.batch_size",
        "training.max_steps",
        "data.corpus_path",
        {},
        (),
    ),
    "inference": Task(
        "infer.py",
        "generation.temperature",
        "generation.batch_size",
        "generation.max_new_tokens",
        "data.prompts_file",
        {"prompt": "Hi"},
        ("prompt",),
    ),
}
LIBRARY_TASKS = ("classification", "sft", "dpo", "rlhf")


def jsonl(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def config_cases(task: Task) -> list[Case]:
    """R-CONFIG: nulls, ranges, a value used as a section, an unknown key, broken YAML."""
    cases = [
        Case("null", [f"--{task.lr}", "null"], [f"--{task.lr} cannot be null"]),
        Case("zero batch", [f"--{task.batch_size}", "0"], [f"--{task.batch_size} must be >= 1"]),
        Case("value as section", [f"--{task.lr}.x", "1"], [f"{task.lr} is a value, not a section"]),
        Case("unknown key", [f"--{task.lr}x", "1"], [f"unknown config key --{task.lr}x"]),
        Case(
            "yaml syntax",
            ["--config", "{tmp}/broken.yaml"],
            ["broken.yaml, line 4: not valid YAML", "flow sequence on line 3"],
            {"broken.yaml": "model:\n  name: x\n  bad: [1, 2\ndata: {}\n"},
        ),
    ]
    if task.steps:
        cases.append(Case("negative steps", [f"--{task.steps}", "-3"], [f"--{task.steps} must be"]))
    return cases


def library_cases(section: str) -> list[Case]:
    """R-CONFIG: a library config section is checked against the dataclass's fields and types."""
    return [
        Case(
            "scheduler typo",
            [f"--{section}.lr_scheduler_type", "cosinee"],
            [f"--{section}.lr_scheduler_type must be one of", "did you mean cosine?"],
        ),
        Case(
            "field typo",
            [f"--{section}.max_stepz", "3"],
            [f"unknown config key --{section}.max_stepz; did you mean --{section}.max_steps?"],
        ),
        Case("wrong type", [f"--{section}.bf16", "maybe"], [f"--{section}.bf16 expects bool"]),
    ]


def data_cases(name: str, task: Task) -> list[Case]:
    """R-DATA-VALIDATION: the file, the line and the column are named."""
    if name == "pretraining":
        return [Case("not prepared", ["--data.out_dir", "{tmp}/nothing"], ["prepare_data.py"])]
    flag = f"--{task.data_key}"
    missing = task.columns[-1]
    without = {k: v for k, v in task.row.items() if k != missing}
    cases = [
        Case(
            "empty file",
            [flag, "{tmp}/empty.jsonl"],
            ["empty.jsonl: no "],
            {"empty.jsonl": ""},
        ),
        Case(
            "bad JSON on line 3",
            [flag, "{tmp}/bad.jsonl"],
            ["bad.jsonl, line 3:", "JSON ("],
            {"bad.jsonl": jsonl(task.row, task.row, '{"prompt": "unclosed')},
        ),
        Case("missing file", [flag, "{tmp}/absent.jsonl"], ["absent.jsonl", "not found"]),
    ]
    if name == "inference":
        cases.append(
            Case(
                "invalid row",
                [flag, "{tmp}/rows.jsonl"],
                ["rows.jsonl, line 2", "a role and a content"],
                {"rows.jsonl": jsonl(task.row, {"messages": [{"role": "user"}]})},
            )
        )
        return cases
    cases.append(
        Case(
            "column absent from every row",
            [flag, "{tmp}/no_column.jsonl"],
            ["no_column.jsonl, line 1", f"missing ['{missing}']"],
            {"no_column.jsonl": jsonl(without, without)},
        )
    )
    if name == "classification":
        cases.append(
            Case(
                "mixed label types",
                [flag, "{tmp}/mixed.jsonl"],
                ["mixed.jsonl, line 2", "label's type"],
                {"mixed.jsonl": jsonl({"text": "a", "label": "x"}, {"text": "b", "label": 1})},
            )
        )
    return cases


def run_cases(
    command: list[str], project: Path, cases: list[Case], tmp_path: Path, env: dict | None = None
) -> list[str]:
    """Start every case at once, then collect what each failed to show."""
    env = {**(env or os.environ), "PYTHONWARNINGS": "ignore"}
    running = []
    for case in cases:
        case_dir = tmp_path / case.name.replace(" ", "_")
        case_dir.mkdir()
        for file_name, text in case.files.items():
            (case_dir / file_name).write_text(text)
        args = [arg.replace("{tmp}", str(case_dir)) for arg in case.args]
        process = subprocess.Popen(
            [*command, *args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running.append((case, process))
    problems = []
    for case, process in running:
        output, _ = process.communicate(timeout=600)
        missing = [text for text in case.expect if text not in output]
        if process.returncode == 0 or missing or "Traceback" in output:
            problems.append(f"{case.name}: exit {process.returncode}, missing {missing}\n{output}")
    return problems


@pytest.mark.parametrize("name", list(TASKS))
def test_every_user_error_is_one_clear_message(render, name, tmp_path):
    """R-CONFIG, R-DATA-VALIDATION"""
    task = TASKS[name]
    project = render(name, "cpu")
    cases = config_cases(task) + data_cases(name, task)
    if name in LIBRARY_TASKS:
        cases += library_cases(task.lr.split(".")[0])
    command = [sys.executable, task.entry, "--config", "configs/smoke.yaml"]
    problems = run_cases(command, project, cases, tmp_path)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("name", ["sft", "pretraining"])
def test_the_multi_gpu_launcher_reports_user_errors_without_a_traceback(render, name, tmp_path):
    """R-CONFIG, R-DATA-VALIDATION: launch/torchrun.sh checks the config before torchrun starts
    any process; a worker's data error is its own message, then one line from torchrun."""
    task = TASKS[name]
    project = render(name, "multi-gpu")
    config = [case for case in config_cases(task) if not case.files]
    # One case starts the workers: its rendezvous port is this test's own.
    data = data_cases(name, task)[0]
    data.expect.append("torchrun: rank ")
    command = ["env", "CONFIG=configs/smoke.yaml", "bash", "launch/torchrun.sh"]
    env = {**ENV, **rendezvous()}
    problems = run_cases(command, project, [*config, data], tmp_path, env)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("pretraining", ["--data.out_dir", "{tmp}/nothing"], "prepare_data.py"),  # the project's
        ("sft", ["--model.name", "{tmp}/no-model"], "no-model"),  # a library's, naming it
    ],
    ids=["project error", "library error"],
)
def test_an_error_is_one_message_and_debug_adds_the_traceback(
    render, name, args, message, tmp_path
):
    project = render(name, "cpu")
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    command = [sys.executable, TASKS[name].entry, "--config", "configs/smoke.yaml", *args]
    plain, debug = (
        subprocess.run(command + extra, cwd=project, env=ENV, capture_output=True, text=True)
        for extra in ([], ["--debug"])
    )
    assert plain.returncode != 0 and message in plain.stderr, plain.stderr
    assert "Traceback" not in plain.stderr, plain.stderr
    if name == "sft":
        assert "error: OSError" in plain.stderr
        assert "run the same command with --debug" in plain.stderr
    assert debug.returncode == plain.returncode and message in debug.stderr, debug.stderr
    assert "Traceback" in debug.stderr
    assert "Add `--debug`" in (project / "README.md").read_text()  # Troubleshooting says so


def test_preference_pairs_all_longer_than_max_length_are_one_clear_message(render, tmp_path):
    """R-DATA-VALIDATION: RewardTrainer drops the pairs longer than max_length; when it drops
    them all, the file is named, not the sampler's 'num_samples=0' that followed."""
    project = ready(render("rlhf", "cpu"), tmp_path / "rlhf")
    result = run_smoke(
        project, "train.py", "--stage", "reward", "--reward_training.max_length", "8"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "preferences.jsonl: every pair is longer than reward_training.max_length (8" in output
    assert "Traceback" not in output


def test_float8_without_a_float8_gpu_is_one_clear_message(render, tmp_path):
    """Issue 8: large pretraining's opt-in float8 needs H100-class GPUs; anywhere else (here,
    CPUs under gloo) every worker stops with one message naming the key, not a traceback."""
    project = ready(render("pretraining", "multi-gpu", "large"), tmp_path / "project")
    command = ["env", "CONFIG=configs/smoke.yaml", "bash", "launch/torchrun.sh"]
    result = subprocess.run(
        [*command, "--training.float8", "true"],
        cwd=project,
        env={**ENV, **rendezvous()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "training.float8 needs GPUs with float8 matmuls" in output
    assert "Traceback" not in output
