"""The pretraining watchdog (R-NAN-GUARD, issue 11): blow-ups stop the run before NaN, naming
the last checkpoint saved before the run went bad, and a resume from it with a lower learning
rate trains on. Real runs of a rendered CPU project; the watchdog's record is checked on its own.
"""

import importlib.util
import json
import math
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import torch
from trainable import ready, run_smoke

THRESHOLDS = {"loss_spike": 1.5, "grad_norm_spike": 10.0}


@pytest.fixture(scope="module")
def project(render, tmp_path_factory) -> Path:
    """A cpu pretraining project with its smoke data prepared."""
    return ready(render("pretraining", "cpu"), tmp_path_factory.mktemp("guard") / "project")


@pytest.fixture
def train_py(project, monkeypatch) -> ModuleType:
    """The rendered train.py, imported (it imports the project's config and model)."""
    monkeypatch.syspath_prepend(str(project))
    spec = importlib.util.spec_from_file_location("rendered_train", project / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(project: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return run_smoke(project, "train.py", "--training.out_dir", str(out), *args)


def losses(out: Path) -> list[float]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r["train_loss"] for r in map(json.loads, lines) if "lr" in r]


def saved_state(checkpoint: Path) -> dict:
    """The state in a checkpoint directory, ckpt_<step>/."""
    return torch.load(checkpoint / "state.pt", weights_only=True)


def largest_weight(checkpoint: Path) -> float:
    """The largest |weight| in a checkpoint; NaN if any weight is not finite."""
    weights = torch.cat([w.flatten() for w in saved_state(checkpoint)["model"].values()])
    return weights.abs().max().item() if torch.isfinite(weights).all() else math.nan


def watch(train_py: ModuleType, values: list[tuple[float, float]], **thresholds) -> ModuleType:
    watchdog = train_py.Watchdog({**THRESHOLDS, **thresholds}, 100, torch.device("cpu"))
    for loss, grad_norm in values:
        watchdog.record(torch.tensor(loss), torch.tensor(grad_norm))
    return watchdog


def test_watchdog_lets_a_healthy_run_be(train_py):
    # Loss falling from ln(vocab) as at the start of training; the norm wandering 3x.
    values = [(10.9 * 0.97**i, 0.5 + (i % 7) / 4) for i in range(200)]
    watchdog = watch(train_py, values)
    assert watchdog.first_spike.item() == 0 and watchdog.first_nonfinite.item() == 0


def test_watchdog_records_the_first_spike_and_the_first_non_finite_step(train_py):
    values = [(4.0, 1.0), (3.9, 1.1), (3.8, 0.9), (6.5, 1.0), (3.0, 50.0), (math.nan, 1.0)]
    watchdog = watch(train_py, values)
    assert watchdog.first_spike.item() == 104  # the loss at step 104 is 1.7x its mean
    assert watchdog.first_nonfinite.item() == 106
    message = watchdog.verdict(0, 104, Path("runs/x/ckpt_000100.pt"))
    assert "diverging: at step 104" in message and "ckpt_000100.pt" in message
    assert "training.loss_spike: 1.5" in message and "lower training.lr" in message
    message = watchdog.verdict(106, 104, None)
    assert "not finite at step 106" in message and "none yet" in message


def test_watchdog_lets_a_lone_gradient_norm_spike_be(train_py):
    # As seen in the smoke run: one step at 40x the norm, the loss unmoved, then calm.
    values = [(4.0, 0.4), (3.9, 0.4), (3.9, 16.0), (3.9, 0.4), (3.9, 16.0), (3.9, 0.4)]
    watchdog = watch(train_py, values)
    assert watchdog.first_spike.item() == 0
    assert watchdog.grad_norm_mean.item() == pytest.approx(0.4)  # outliers do not drag it


def test_watchdog_gradient_norm_spike_and_thresholds_that_are_off(train_py):
    values = [(4.0, 1.0), (3.9, 1.0), (3.9, 12.0), (3.9, 15.0), (3.9, 30.0)]
    assert watch(train_py, values).first_spike.item() == 105  # the third high step in a row
    assert watch(train_py, values, grad_norm_spike=None).first_spike.item() == 0
    values = [(4.0, 1.0), (3.9, 1.0), (9.0, 1.0)]
    assert watch(train_py, values, loss_spike=None).first_spike.item() == 0


def test_fused_adamw_skips_a_step_flagged_found_inf():
    """The mechanism the loop relies on: fused AdamW reads `found_inf` on the device."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1, fused=True)
    weight.grad = torch.tensor([math.nan, 1.0, 1.0])
    optimizer.found_inf = torch.tensor(1.0)
    optimizer.step()
    assert torch.equal(weight.detach(), torch.ones(3))
    assert optimizer.state[weight]["step"].item() == 0  # as if the step never happened
    weight.grad = torch.ones(3)
    optimizer.found_inf = torch.tensor(0.0)
    optimizer.step()
    assert (weight.detach() < 1).all() and optimizer.state[weight]["step"].item() == 1


@pytest.mark.smoke
def test_diverging_run_stops_naming_a_sane_checkpoint_and_resumes_with_lower_lr(project, tmp_path):
    schedule = ["--training.lr_decay_steps", "40", "--checkpoint.interval", "2"]
    healthy = train(project, tmp_path, "--training.max_steps", "4", *schedule)
    assert healthy.returncode == 0, healthy.stderr
    healthy_size = largest_weight(tmp_path / "ckpt_000004")

    # 3000x the learning rate: the weights blow up within a few steps.
    diverged = train(
        project, tmp_path, "--resume", "--training.lr", "30.0", "--training.max_steps", "40",
        *schedule,
    )  # fmt: skip
    assert diverged.returncode == 1, diverged.stdout + diverged.stderr
    found = re.search(r"at step (\d+) .*Last good checkpoint: (\S+);", diverged.stderr)
    assert found and "training is diverging" in diverged.stderr, diverged.stderr
    bad_step, named = int(found[1]), Path(found[2])
    saved = sorted(tmp_path.glob("ckpt_[0-9]*"))
    assert saved[-1] == named  # nothing was saved after the run went bad
    step = saved_state(named)["step"]
    assert step < bad_step
    assert largest_weight(named) < 1.5 * healthy_size  # finite, and nowhere near a blow-up

    resumed = train(
        project, tmp_path, "--resume", str(named), "--training.lr", "1.0e-3",
        "--training.max_steps", "10", *schedule,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    after = losses(tmp_path)[-(10 - step) :]
    assert all(math.isfinite(x) for x in after) and max(after) < 6.0, after
    assert saved_state(tmp_path / "ckpt_000010")["step"] == 10


@pytest.mark.smoke
def test_the_guard_can_be_turned_off_with_null(project, tmp_path):
    off = ["--training.loss_spike", "null", "--training.grad_norm_spike", "null"]
    result = train(project, tmp_path, "--training.max_steps", "2", *off)
    assert result.returncode == 0, result.stderr
    assert len(losses(tmp_path)) == 2
