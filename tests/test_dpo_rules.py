"""The dpo template obeys RULES.md: each test reads rendered projects and cites a rule.

Checks read train.py as an AST and the configs as YAML; nothing trains here (the rendered
projects' own smoke tests do that, see test_smoke_projects.py).
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from combinations import valid_combinations
from rendered import calls, config, function, keywords, tree
from trl import DPOConfig

TASK = "dpo"
COMBOS = [(hw, scale) for task, hw, scale in valid_combinations([TASK])]
GPU = {"cuda", "multi-gpu"}

pytestmark = pytest.mark.parametrize(
    ("hardware", "scale"), COMBOS, ids=["-".join(c) for c in COMBOS]
)


@pytest.fixture
def project(render, hardware: str, scale: str) -> Path:
    return render(TASK, hardware, scale)


def test_r_use_library_config_takes_the_training_section_as_is(project):
    # R-USE-LIBRARY: every key of `training:` is an DPOConfig field; nothing is hand-written.
    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    for name in ("train", "smoke"):
        assert set(config(project, name)["training"]) <= fields, name
    (call,) = calls(tree(project), "DPOConfig")
    (splat,) = call.keywords  # Config(**training)
    assert splat.arg is None and ast.unparse(splat.value) == "training"
    training = config(project)["training"]
    for key in ("gradient_accumulation_steps", "save_total_limit", "report_to"):
        assert key in training
    source = (project / "train.py").read_text()
    assert "backward(" not in source and "optimizer.step" not in source


def test_r_ref_frozen_reference_and_beta(project, scale):
    # R-REF-FROZEN: ref_model=None makes the trainer build the reference (a frozen copy at
    # small, the adapter-disabled base under LoRA); train.py checks it is frozen; beta is a
    # config value, 0.1 by default; the rewards (beta-scaled log-ratios: the implicit KL) log.
    module = tree(project)
    (trainer,) = calls(module, "DPOTrainer")
    ref = keywords(trainer)["ref_model"]
    assert isinstance(ref, ast.Constant) and ref.value is None
    check = function(module, "check_reference_frozen")
    assert "requires_grad" in ast.unparse(check) and calls(check, "SystemExit")
    assert calls(function(module, "build_trainer"), "check_reference_frozen")
    if scale == "small":
        assert calls(check, "requires_grad_")
    else:
        assert "lora_" in ast.unparse(check)
    assert config(project)["training"]["beta"] == 0.1
    assert config(project, "smoke")["training"]["beta"] == 0.1
    training = config(project)["training"]
    assert training.get("precompute_ref_log_probs", False) is False
    assert training["logging_steps"] > 0 and training["report_to"] == "tensorboard"


def test_r_data_validation_preference_schema(project):
    # R-DATA-VALIDATION: sample data in prompt/chosen/rejected form; the schema is in the errors.
    row = json.loads((project / "data" / "train.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"]
    source = (project / "train.py").read_text()
    assert '"chosen"' in source and '"rejected"' in source


def test_r_memory_checkpointing_and_learning_rates(project, hardware, scale):
    # R-MEMORY: activation checkpointing on at larger scales (FSDP's own at large), and on GPUs,
    # where small projects take their 32 pairs as one micro-batch; TRL's default (on) is
    # overridden explicitly for small projects on a CPU or a Mac. Learning rates suit the method.
    training = config(project)["training"]
    if scale == "small":
        assert training["activation_checkpointing"] is (hardware in ("cuda", "multi-gpu"))
        assert 5e-7 <= training["learning_rate"] <= 1e-6
    else:
        assert training["learning_rate"] == 5e-6
        if scale == "large":
            assert training["fsdp"] and training["fsdp_config"]["activation_checkpointing"]
        else:
            assert training["activation_checkpointing"] is True
    effective = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    assert effective == 32
