"""Smoke test: train the tiny local model for a few steps, resume, check the outputs.

Runs on a CPU in well under a minute; `configs/smoke.yaml` holds the settings.
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
STEPS = 6  # training.max_steps in configs/smoke.yaml
LAUNCH = [sys.executable]


def train(model_dir: Path, output_dir: Path, *extra: str) -> None:
    cmd = [*LAUNCH, "train.py", "--config", "configs/smoke.yaml"]
    cmd += ["--model.name", str(model_dir), "--training.output_dir", str(output_dir), *extra]
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=300)


def state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("smoke")
    model_dir = build(tmp / "tiny-model")
    train(model_dir, tmp / "run")
    return tmp / "run"


def test_loss_is_logged_and_finite(run: Path) -> None:
    losses = [e["loss"] for e in state(run / f"checkpoint-{STEPS}")["log_history"] if "loss" in e]
    assert len(losses) == STEPS  # logging_steps: 1
    assert all(math.isfinite(loss) for loss in losses)


def test_evaluation_reports_classification_metrics(run: Path) -> None:
    metrics = json.loads((run / "eval_results.json").read_text())
    for name in ("accuracy", "f1", "precision", "recall"):
        assert 0.0 <= metrics[f"eval_{name}"] <= 1.0
    evals = [e for e in state(run / f"checkpoint-{STEPS}")["log_history"] if "eval_f1" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]  # eval_steps: 2


def test_checkpoint_holds_the_full_training_state(run: Path) -> None:
    checkpoint = run / f"checkpoint-{STEPS}"
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert list(checkpoint.glob("*.safetensors"))
    assert state(checkpoint)["global_step"] == STEPS


def test_final_model_is_saved_as_safetensors(run: Path) -> None:
    final = run / "final"
    assert (final / "model.safetensors").is_file()
    assert (final / "tokenizer.json").is_file()
    assert not (final / "pytorch_model.bin").exists()


def test_resume_continues_from_the_checkpoint(run: Path, tmp_path: Path) -> None:
    output_dir = shutil.copytree(run, tmp_path / "run")  # leave the shared run as it was
    first = state(output_dir / f"checkpoint-{STEPS}")
    train(run.parent / "tiny-model", output_dir, "--resume", "--training.max_steps", str(STEPS + 2))
    resumed = state(output_dir / f"checkpoint-{STEPS + 2}")
    assert resumed["global_step"] == STEPS + 2
    # The history up to the checkpoint was restored, not retrained: even its timings match.
    done = len(first["log_history"])
    assert resumed["log_history"][:done] == first["log_history"]
    new_steps = [e["step"] for e in resumed["log_history"][done:] if "loss" in e]
    assert new_steps == [STEPS + 1, STEPS + 2]
