"""Smoke test: both stages with the tiny local model, then resume.

The reward model trains on data/preferences.jsonl and is saved; the policy stage loads that
saved reward model and runs GRPO against it. Settings: configs/smoke.yaml.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import build

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4  # reward_training.max_steps and policy_training.max_steps in configs/smoke.yaml
LAUNCH = [sys.executable]


def train(model_dir: Path, run: Path, *extra: str, check: bool = True) -> str:
    """Run train.py on configs/smoke.yaml with outputs under `run`; return its output."""
    cmd = [*LAUNCH, "train.py", "--config", "configs/smoke.yaml"]
    cmd += ["--model.name", str(model_dir), "--reward_model.name", str(model_dir)]
    cmd += ["--reward_model.save_dir", str(run / "reward_model")]
    cmd += ["--reward_training.output_dir", str(run / "reward")]
    cmd += ["--policy_training.output_dir", str(run / "policy"), *extra]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, output[-4000:]
    return output


def history(checkpoint: Path) -> list[dict]:
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("smoke")
    output = train(build(tmp / "tiny-model"), tmp / "run")
    return tmp / "run", output


def test_reward_model_is_trained_evaluated_and_saved(run) -> None:
    run, _ = run
    logs = history(run / "reward" / f"checkpoint-{STEPS}")
    losses = [e["loss"] for e in logs if "loss" in e]
    assert len(losses) == STEPS  # logging_steps: 1
    assert all(math.isfinite(loss) for loss in losses)
    accuracies = [e["eval_accuracy"] for e in logs if "eval_accuracy" in e]
    assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)  # eval_steps: 2
    saved = run / "reward_model"
    assert (saved / "model.safetensors").is_file()
    assert (saved / "tokenizer.json").is_file()


def test_policy_stage_scores_with_the_saved_reward_model(run) -> None:
    run, output = run
    assert f"reward model: {run / 'reward_model'}" in output
    logs = [e for e in history(run / "policy" / f"checkpoint-{STEPS}") if "loss" in e]
    terms = {key.split("/")[1] for e in logs for key in e if key.startswith("rewards/")}
    assert {"length", "repetition"} < terms  # the reward model, plus the rule-based terms


def test_reward_and_kl_are_logged_together(run) -> None:
    # R-REWARD-GUARD: every policy log line has both, and the KL penalty is on.
    run, _ = run
    logs = [e for e in history(run / "policy" / f"checkpoint-{STEPS}") if "loss" in e]
    assert len(logs) == STEPS
    for entry in logs:
        assert math.isfinite(entry["reward"]) and math.isfinite(entry["kl"]), entry
        assert entry["kl"] >= 0.0


def test_policy_stage_needs_a_reward_model(run, tmp_path: Path) -> None:
    run, _ = run
    output = train(run.parent / "tiny-model", tmp_path, "--stage", "policy", check=False)
    assert "no reward model in" in output and "run the reward stage first" in output


def test_checkpoints_hold_the_full_training_state(run) -> None:
    run, _ = run
    for stage in ("reward", "policy"):
        checkpoint = run / stage / f"checkpoint-{STEPS}"
        for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json"):
            assert (checkpoint / name).is_file(), f"{stage}: {name}"
        assert list(checkpoint.glob("*.safetensors")), stage
    final = run / "policy" / "final"
    assert (final / "model.safetensors").is_file()
    assert not (final / "pytorch_model.bin").exists()


def test_resume_continues_the_interrupted_stage(run, tmp_path: Path) -> None:
    run, _ = run
    copy = shutil.copytree(run, tmp_path / "run")  # leave the shared run as it was
    first = history(copy / "policy" / f"checkpoint-{STEPS}")
    output = train(
        run.parent / "tiny-model", copy, "--resume", "--policy_training.max_steps", str(STEPS + 2)
    )
    assert "reward model already trained; resuming the policy stage" in output
    resumed = history(copy / "policy" / f"checkpoint-{STEPS + 2}")
    # The history up to the checkpoint was restored, not retrained: even its timings match.
    assert resumed[: len(first)] == first
    new_steps = [e["step"] for e in resumed[len(first) :] if "loss" in e]
    assert new_steps == [STEPS + 1, STEPS + 2]
