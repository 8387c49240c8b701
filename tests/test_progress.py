"""Progress (issue 10): a bar with rate and ETA from the first step in the pretraining loop and
in inference, and, once the first steps are timed, one line estimating the run's length.

Real runs of rendered CPU projects (their smoke configs); the bar's text is tqdm's own.
"""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from rendered import calls, function, keywords, tree
from trainable import ENV, ready, run_smoke

ESTIMATE = re.compile(r"^estimated run time: \S+ for ([\d,]+) steps at [\d.e+-]+ s/step", re.M)


def bar_states(stderr: str, desc: str) -> list[str]:
    """Every state a tqdm bar was drawn in (tqdm redraws in place, after a carriage return)."""
    return [part.strip() for part in re.split(r"[\r\n]", stderr) if part.startswith(f"{desc}:")]


@pytest.fixture(scope="module")
def pretraining(render, tmp_path_factory) -> Path:
    """A cpu pretraining project with its smoke data prepared."""
    return ready(render("pretraining", "cpu"), tmp_path_factory.mktemp("progress") / "pretraining")


@pytest.fixture(scope="module")
def first_run(pretraining, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("progress") / "run"
    result = run_smoke(pretraining, "train.py", "--training.out_dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def test_pretraining_bar_counts_optimizer_steps_with_rate_and_eta(first_run):
    result, _ = first_run
    states = bar_states(result.stderr, "training")
    assert states[0].startswith("training:   0%") and "0/8" in states[0]
    # From the first step on: a rate and a remaining time, then the finished bar.
    first_step = next(state for state in states if " 1/8 " in state)
    assert re.search(r"<\d\d:\d\d, +[\d.]+(step/s|s/step)\]", first_step), first_step
    assert states[-1].startswith("training: 100%") and "8/8" in states[-1]


def test_pretraining_estimates_the_run_length_once_after_the_first_steps(first_run):
    result, _ = first_run
    estimates = ESTIMATE.findall(result.stdout)
    assert estimates == ["8"], result.stdout  # the configured max_steps, once
    lines = result.stdout.splitlines()
    estimate_at = next(i for i, line in enumerate(lines) if ESTIMATE.match(line))
    # Steps 1 and 2 compile and warm up; steps 3 to 5 are timed.
    assert lines.index(next(line for line in lines if line.startswith("step 5: "))) > estimate_at
    assert any(line.startswith("step 4: ") for line in lines[:estimate_at])


def test_pretraining_log_lines_stay_whole_beside_the_bar(first_run):
    result, _ = first_run
    metric_lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(metric_lines) == 8 + 4  # a line per step (logging.interval 1), 4 validations
    assert "training:" not in result.stdout  # the bar is on stderr, the log on stdout


def test_resumed_pretraining_bar_starts_at_the_resumed_step(pretraining, first_run):
    _, out = first_run
    longer = ("--training.max_steps", "16", "--training.lr_decay_steps", "16")
    result = run_smoke(pretraining, "train.py", "--training.out_dir", str(out), *longer, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    states = bar_states(result.stderr, "training")
    assert "8/16" in states[0] and "16/16" in states[-1]
    assert not any(re.search(r"\b[0-7]/16\b", state) for state in states)
    (estimate,) = [line for line in result.stdout.splitlines() if ESTIMATE.match(line)]
    assert re.search(r"for 16 steps at .*, \S+ of it left", estimate), estimate


@pytest.fixture(scope="module")
def train_py(render) -> ModuleType:
    """The rendered cpu train.py, imported (it imports the project's config and model)."""
    project = render("pretraining", "cpu")
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location("progress_train", project / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
    return module


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.42, "0.42s"),
        (845, "14m05s"),
        (3 * 3600 + 12 * 60 + 10, "3h12m"),
        (2 * 86400 + 7 * 3600, "2d07h"),
    ],
)
def test_run_length_reads_as_people_say_it(train_py, seconds, said):
    assert train_py.duration(seconds) == said


def test_run_estimate_names_steps_pace_and_what_a_resumed_run_has_left(train_py):
    fresh = train_py.run_estimate(2.3, 5000, None)
    assert fresh.startswith("estimated run time: 3h11m for 5,000 steps at 2.3 s/step")
    assert "left" not in fresh
    assert ", 1h16m of it left" in train_py.run_estimate(2.3, 5000, 2000)


def test_multi_gpu_pretraining_draws_the_bar_on_rank_0_only(render):
    for scale in ("small", "large"):  # DDP and FSDP
        train = function(tree(render("pretraining", "multi-gpu", scale)), "train")
        (bar,) = calls(train, "tqdm")
        assert ast.unparse(keywords(bar)["disable"]) == "rank != 0"


@pytest.fixture(scope="module")
def tiny_chat_model(render, tmp_path_factory) -> Path:
    """A tiny chat model from the sft project's builder (inference ships none)."""
    model = tmp_path_factory.mktemp("progress") / "tiny-model"
    builder = render("sft", "cpu") / "tests" / "tiny_model.py"
    built = subprocess.run(
        [sys.executable, str(builder), str(model)], env=ENV, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return model


def infer(project: Path, model: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return run_smoke(
        project, "infer.py", "--model.name", str(model), "--data.output_file", str(out), *args
    )


def test_inference_bar_counts_prompts_with_rate_and_eta(render, tiny_chat_model, tmp_path):
    project = render("inference", "cpu")
    prompts = len((project / "data" / "prompts.jsonl").read_text().strip().splitlines())
    result = infer(project, tiny_chat_model, tmp_path / "out.jsonl")
    assert result.returncode == 0, result.stderr[-3000:]
    states = bar_states(result.stderr, "generating")
    assert states[0].startswith("generating:   0%") and f"0/{prompts}" in states[0]
    # The elapsed and remaining time and the rate, as tqdm draws them.
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+(prompt/s|s/prompt)\]", states[-1]), states
    assert states[-1].startswith("generating: 100%") and f"{prompts}/{prompts}" in states[-1]
    # The whole run's rate, on a line of its own (benchmarks/scale_check.py reads it).
    assert re.search(rf"^{prompts} prompts in \d+s \([\d.]+ prompts/s\)$", result.stdout, re.M)


def test_inference_bar_off_a_terminal_is_not_redrawn_each_batch(render, tiny_chat_model, tmp_path):
    # CI and SLURM logs: one prompt a batch, yet only the first and the finished states
    # (the bar is redrawn at most once a minute there).
    project = render("inference", "cpu")
    args = ("--generation.batch_size", "1")
    result = infer(project, tiny_chat_model, tmp_path / "out.jsonl", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    states = bar_states(result.stderr, "generating")
    assert len(states) == 2 and states[-1].startswith("generating: 100%"), states


def test_inference_replicas_draw_one_bar(render, tiny_chat_model, tmp_path):
    project = render("inference", "multi-gpu")
    result = infer(project, tiny_chat_model, tmp_path / "out.jsonl", "--engine.replicas", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replica 0: " in result.stdout and "replica 1: " in result.stdout
    finished = [
        s for s in bar_states(result.stderr, "generating") if s.startswith("generating: 100%")
    ]
    assert len(finished) == 1, result.stderr[-3000:]
