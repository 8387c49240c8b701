"""The dpo template obeys RULES.md: each test reads rendered projects and cites a rule.

Checks read train.py as an AST and the configs as YAML; nothing trains here (the rendered
projects' own smoke tests do that, see test_smoke_projects.py).
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from combinations import valid_combinations
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


def config(project: Path, name: str = "train") -> dict:
    return yaml.safe_load((project / "configs" / f"{name}.yaml").read_text())


def tree(project: Path) -> ast.Module:
    return ast.parse((project / "train.py").read_text())


def calls(node: ast.AST, name: str) -> list[ast.Call]:
    """Calls whose callee is `name` or ends in `.name`."""
    found = []
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if callee == name:
                found.append(call)
    return found


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def function(module: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(module) if isinstance(n, ast.FunctionDef) and n.name == name)


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


def test_r_pad_token_set_from_eos(project):
    # R-PAD-TOKEN: a tokenizer without a pad token gets eos before anything is padded.
    build = function(tree(project), "build_trainer")
    fixes = [
        n
        for n in ast.walk(build)
        if isinstance(n, ast.If)
        and "pad_token is None" in ast.unparse(n.test)
        and "tokenizer.pad_token = tokenizer.eos_token" in ast.unparse(n)
    ]
    assert fixes
    (trainer,) = calls(build, "DPOTrainer")
    assert fixes[0].lineno < trainer.lineno


def test_r_model_fits_task_instruct_model(project, scale):
    # R-MODEL-FITS-TASK: DPO starts from an instruct/chat model, never gpt2.
    name = config(project)["model"]["name"]
    assert "instruct" in name.lower() or "chat" in name.lower(), name
    assert "gpt2" not in name.lower()


def test_r_lora_at_scale_and_r_trainable(project, scale):
    # R-LORA-AT-SCALE: LoRA from medium up, full fine-tuning at small; R-TRAINABLE: counted.
    module = tree(project)
    (trainer,) = calls(module, "DPOTrainer")
    has_peft = "peft_config" in keywords(trainer)
    assert has_peft == (scale != "small")
    assert ("lora" in config(project)) == (scale != "small")
    main = function(module, "main")
    assert "requires_grad" in ast.unparse(main)
    assert any(
        "trainable == 0" in ast.unparse(n.test) for n in ast.walk(main) if isinstance(n, ast.If)
    )


def test_r_memory_checkpointing_and_learning_rates(project, hardware, scale):
    # R-MEMORY: activation checkpointing on at larger scales (FSDP's own at large); TRL's
    # default (on) is overridden explicitly at small. Learning rates suit the method.
    training = config(project)["training"]
    if scale == "small":
        assert training["activation_checkpointing"] is False
        assert 5e-7 <= training["learning_rate"] <= 1e-6
    else:
        assert training["learning_rate"] == 5e-6
        if scale == "large":
            assert training["fsdp"] and training["fsdp_config"]["activation_checkpointing"]
        else:
            assert training["activation_checkpointing"] is True
    effective = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    assert effective == 32


def test_r_amp_and_r_pin_memory_per_hardware(project, hardware):
    # R-AMP / R-PIN-MEMORY / R-MPS: bf16 + pinned memory on CUDA, fp32 and no pinning elsewhere
    # (TRL would default bf16 on, so CPU/MPS configs turn it off explicitly).
    for name in ("train", "smoke"):
        training = config(project, name)["training"]
        assert training["bf16"] is (hardware in GPU), name
    training = config(project)["training"]
    assert training["dataloader_pin_memory"] is (hardware in GPU)
    assert training.get("use_cpu", False) is (hardware == "cpu")
    if hardware == "mps":
        source = (project / "train.py").read_text()
        assert 'os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")' in source
        assert training["per_device_train_batch_size"] < training["gradient_accumulation_steps"]


def test_r_device_falls_back_with_a_warning(project, hardware):
    # R-DEVICE: a missing accelerator warns and trains on the CPU; the device is printed.
    module = tree(project)
    build = function(module, "build_trainer")
    warns = calls(build, "warn")
    assert bool(warns) == (hardware != "cpu")
    assert "device" in ast.unparse(function(module, "main"))


def test_r_ddp_only_multi_and_rank0_printing(project, hardware):
    # R-DDP-ONLY-MULTI / R-DDP-INIT: only multi-gpu prints through PartialState (rank 0).
    source = (project / "train.py").read_text()
    assert ("PartialState" in source) == (hardware == "multi-gpu")
    training = config(project)["training"]
    assert ("ddp_backend" in training) == (hardware == "multi-gpu")
    if hardware == "multi-gpu":
        assert training["ddp_backend"] == "nccl"
        assert "state.print(" in source and "\n    print(" not in source


def test_r_eval_strategy_checkpoints_and_logging(project):
    # R-EVAL-STRATEGY, R-FULL-CHECKPOINT, R-LOG-AFTER-STEP, R-OVERFIT-WATCH.
    training = config(project)["training"]
    assert training["eval_strategy"] == training["save_strategy"] == "steps"
    assert training["eval_steps"] == training["save_steps"]
    assert training["load_best_model_at_end"] and training["metric_for_best_model"] == "eval_loss"
    assert training["save_total_limit"] >= 1
    assert training["report_to"] == "tensorboard" and training["logging_steps"] > 0
    assert training["weight_decay"] > 0 and training["max_grad_norm"] == 1.0
    assert calls(tree(project), "EarlyStoppingCallback")


def test_r_seed_r_output_name_r_safe_load(project):
    # R-SEED (before the model), R-OUTPUT-NAME, R-SAFE-LOAD (trust_remote_code from config, off).
    cfg = config(project)
    assert cfg["training"]["seed"] == 42
    assert cfg["training"]["output_dir"].endswith("runs/demo")
    assert cfg["model"]["trust_remote_code"] is False
    build = function(tree(project), "build_trainer")
    (seed,) = calls(build, "set_seed")
    (load,) = calls(build, "from_pretrained")[-1:]
    assert seed.lineno < load.lineno
    assert "trust_remote_code" in keywords(load)


def test_r_resume_and_r_data_validation(project):
    # R-RESUME: --resume goes to the trainer; R-DATA-VALIDATION: errors name the file and schema.
    module = tree(project)
    (train,) = calls(function(module, "main"), "train")
    assert "resume_from_checkpoint" in keywords(train)
    loader = ast.unparse(function(module, "load_data"))
    assert "SCHEMA" in loader and "path" in loader and "SystemExit" in loader
