"""Rules the sft and dpo templates share, checked on both: each test reads rendered projects
and cites a rule. Task-specific rules are in test_sft_rules.py and test_dpo_rules.py.
"""

import ast
from pathlib import Path

import pytest
from combinations import valid_combinations
from rendered import calls, config, function, keywords, tree

COMBOS = valid_combinations(["sft", "dpo"])
GPU = {"cuda", "multi-gpu"}

pytestmark = pytest.mark.parametrize(
    ("task", "hardware", "scale"), COMBOS, ids=["-".join(c) for c in COMBOS]
)


@pytest.fixture
def project(render, task: str, hardware: str, scale: str) -> Path:
    return render(task, hardware, scale)


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


TRAINER = {"sft": "SFTTrainer", "dpo": "DPOTrainer"}


def test_r_pad_token_set_from_eos(project, task):
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
    (trainer,) = calls(build, TRAINER[task])
    assert fixes[0].lineno < trainer.lineno


def test_r_model_fits_task_instruct_model(project):
    # R-MODEL-FITS-TASK: chat SFT and DPO start from an instruct/chat model, never gpt2.
    name = config(project)["model"]["name"]
    assert "instruct" in name.lower() or "chat" in name.lower(), name
    assert "gpt2" not in name.lower()


def test_r_lora_at_scale_and_r_trainable(project, task, scale):
    # R-LORA-AT-SCALE: LoRA from medium up, full fine-tuning at small; R-TRAINABLE: counted.
    module = tree(project)
    (trainer,) = calls(module, TRAINER[task])
    has_peft = "peft_config" in keywords(trainer)
    assert has_peft == (scale != "small")
    assert ("lora" in config(project)) == (scale != "small")
    main = function(module, "main")
    assert "requires_grad" in ast.unparse(main)
    assert any(
        "trainable == 0" in ast.unparse(n.test) for n in ast.walk(main) if isinstance(n, ast.If)
    )
