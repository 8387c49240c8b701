"""Smoke test: train the tiny local model for a few steps on 2 processes, resume, check the outputs.

Runs on a CPU in about a minute; `configs/smoke.yaml` holds the settings.
"""

import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_model import build

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smoke.yaml"
STEPS = 6  # training.max_steps in configs/smoke.yaml
# torchrun, from this interpreter's environment; gloo stands in for NCCL on a CPU.
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def train(model_dir: Path, output_dir: Path, *extra: str) -> None:
    cmd = [*LAUNCH, "train.py", "--config", str(CONFIG)]
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


@pytest.fixture
def train_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    # Build the trainer in this process as rank 0 of 1, so its gloo process group can start.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    import train as module

    return module


def smoke_config(train_module, run: Path, tmp_path: Path) -> dict:
    args = ["--config", str(CONFIG), "--model.name", str(run.parent / "tiny-model")]
    cfg, _ = train_module.load_config([*args, "--training.output_dir", str(tmp_path)])
    return cfg


REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def test_loss_and_rewards_are_logged_and_finite(run: Path) -> None:
    history = state(run / f"checkpoint-{STEPS}")["log_history"]
    logs = [e for e in history if "loss" in e]
    assert [e["step"] for e in logs] == list(range(1, STEPS + 1))  # logging_steps: 1
    for entry in logs:
        assert all(math.isfinite(entry[key]) for key in ("loss", *REWARDS)), entry
        assert 0.0 <= entry["rewards/accuracies"] <= 1.0
    evals = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]  # eval_steps: 2
    assert all(f"eval_{key}" in evals[0] for key in REWARDS)


def test_reference_stays_where_the_policy_started(run: Path) -> None:
    # R-REF-FROZEN: rewards are beta * log(policy / reference). Before the first update the two
    # are the same model, so every reward is 0; afterwards the policy has moved and the
    # reference has not, so they are not (a reference that trained along would keep them at 0).
    logs = [e for e in state(run / f"checkpoint-{STEPS}")["log_history"] if "loss" in e]
    assert abs(logs[0]["rewards/chosen"]) < 1e-6 and abs(logs[0]["rewards/rejected"]) < 1e-6
    tolerance = 1e-2 if torch.cuda.is_available() else 1e-4  # bf16 holds about 3 digits
    assert abs(logs[0]["loss"] - math.log(2)) < tolerance  # -log(sigmoid(0))
    assert any(abs(e["rewards/margins"]) > 1e-6 for e in logs[1:])


def test_reference_model_is_frozen_and_beta_comes_from_the_config(
    run: Path, tmp_path: Path, train_module
) -> None:
    trainer = train_module.build_trainer(smoke_config(train_module, run, tmp_path))
    assert trainer.args.beta == 0.1
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    assert any(p.requires_grad for p in trainer.model.parameters())
    assert train_module.check_reference_frozen(trainer)


def test_bad_data_is_reported_with_the_file_and_schema(tmp_path: Path, train_module) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": ""}) + "\n")
    data_cfg = {"train_file": str(bad), "validation_file": str(bad)}
    with pytest.raises(SystemExit, match=r"bad\.jsonl, line 1: empty rejected\nExpected"):
        train_module.load_data(data_cfg)


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
