"""The sft template obeys RULES.md: each test reads rendered projects and cites a rule.

Checks read train.py as an AST and the configs as YAML; nothing trains here (the rendered
projects' own smoke tests do that, see test_smoke_projects.py).
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from combinations import valid_combinations
from rendered import calls, config, function, tree
from trl import SFTConfig

TASK = "sft"
COMBOS = [(hw, scale) for task, hw, scale in valid_combinations([TASK])]
GPU = {"cuda", "multi-gpu"}

pytestmark = pytest.mark.parametrize(
    ("hardware", "scale"), COMBOS, ids=["-".join(c) for c in COMBOS]
)


@pytest.fixture
def project(render, hardware: str, scale: str) -> Path:
    return render(TASK, hardware, scale)


def test_r_use_library_config_takes_the_training_section_as_is(project):
    # R-USE-LIBRARY: every key of `training:` is an SFTConfig field; nothing is hand-written.
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    for name in ("train", "smoke"):
        assert set(config(project, name)["training"]) <= fields, name
    (call,) = calls(tree(project), "SFTConfig")
    (splat,) = call.keywords  # Config(**training)
    assert splat.arg is None and ast.unparse(splat.value) == "training"
    training = config(project)["training"]
    for key in ("gradient_accumulation_steps", "save_total_limit", "report_to"):
        assert key in training
    source = (project / "train.py").read_text()
    assert "backward(" not in source and "optimizer.step" not in source


def test_r_loss_mask_completion_only_and_checked(project):
    # R-LOSS-MASK: the prompt is masked (completion_only_loss on prompt/completion data), and a
    # check stops on examples with no token in the loss and warns when nothing is masked.
    for name in ("train", "smoke"):
        assert config(project, name)["training"]["completion_only_loss"] is True
    module = tree(project)
    check = function(module, "check_loss_mask")
    assert calls(check, "SystemExit") and calls(check, "warn")
    assert calls(function(module, "build_trainer"), "check_loss_mask")
    row = json.loads((project / "data" / "train.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "completion"}


def test_r_memory_checkpointing_and_learning_rates(project, hardware, scale):
    # R-MEMORY: activation checkpointing on at larger scales (FSDP's own at large), and at
    # small on GPUs, whose one micro-batch of 32 examples needs it; TRL's default (on) is
    # overridden explicitly on CPU and MPS at small. Learning rates suit the method.
    training = config(project)["training"]
    if scale == "small":
        on_gpu = hardware in ("cuda", "multi-gpu")
        assert training["activation_checkpointing"] is on_gpu
        assert (training["per_device_train_batch_size"] == 32) is on_gpu
        assert 1e-5 <= training["learning_rate"] <= 2e-5
    else:
        assert 1e-4 <= training["learning_rate"] <= 2e-4
        if scale == "large":
            assert training["fsdp"] and training["fsdp_config"]["activation_checkpointing"]
        else:
            assert training["activation_checkpointing"] is True
    effective = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    assert effective == 32
