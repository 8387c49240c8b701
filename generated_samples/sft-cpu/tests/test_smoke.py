"""Smoke test: train the tiny local model for a few steps, resume, check the outputs.

Runs on a CPU in about a minute; `configs/smoke.yaml` holds the settings.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from tiny_model import build

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smoke.yaml"
STEPS = 6  # training.max_steps in configs/smoke.yaml
LAUNCH = [sys.executable]


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
    import train as module

    return module


def smoke_config(train_module, run: Path, tmp_path: Path) -> dict:
    args = ["--config", str(CONFIG), "--model.name", str(run.parent / "tiny-model")]
    cfg, _ = train_module.load_config([*args, "--training.output_dir", str(tmp_path)])
    return cfg


def test_loss_is_logged_and_finite(run: Path) -> None:
    history = state(run / f"checkpoint-{STEPS}")["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == STEPS  # logging_steps: 1
    assert all(math.isfinite(loss) for loss in losses)
    evals = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]  # eval_steps: 2
    assert all(math.isfinite(e["eval_loss"]) for e in evals)


def test_only_the_completion_is_in_the_loss(run: Path, tmp_path: Path, train_module) -> None:
    # R-LOSS-MASK: the prompt's tokens are labelled -100, the completion's are trained on.
    trainer = train_module.build_trainer(smoke_config(train_module, run, tmp_path))
    example = trainer.train_dataset[0]
    labels, input_ids = example["labels"], example["input_ids"]
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert first > 0 and all(label == -100 for label in labels[:first])
    assert labels[first:] == input_ids[first:]
    completion = json.loads((ROOT / "data" / "train.jsonl").read_text().splitlines()[0])
    trained = trainer.processing_class.decode(labels[first:])
    assert trained.startswith(completion["completion"][0]["content"])
    assert "<|im_start|>" not in trained  # no prompt or chat-template header in the loss


def test_an_example_with_nothing_to_learn_fails_loudly(
    run: Path, tmp_path: Path, train_module
) -> None:
    cfg = smoke_config(train_module, run, tmp_path)
    cfg["training"]["max_length"] = 8  # shorter than every prompt: no completion token is left
    with pytest.raises(SystemExit, match=r"train\.jsonl: \d+ of \d+ examples have no token"):
        train_module.build_trainer(cfg)
    with pytest.warns(UserWarning, match="no masked token"):
        train_module.check_loss_mask(Dataset.from_dict({"labels": [[5, 6], [-100, 7]]}), 2, "x")


def test_bad_data_is_reported_with_the_file_and_schema(tmp_path: Path, train_module) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi", "response": "Hello"}) + "\n")
    data_cfg = {"train_file": str(bad), "validation_file": str(bad)}
    with pytest.raises(SystemExit, match=r"bad\.jsonl, line 1: missing \['completion'\]\nExpected"):
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
