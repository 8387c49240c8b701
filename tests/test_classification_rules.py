"""The classification template obeys RULES.md: each test reads rendered projects and cites a rule.

Checks read train.py as an AST and the configs as YAML; nothing trains here (the rendered
projects' own smoke tests do that, see test_smoke_projects.py).
"""

import ast
import dataclasses
from functools import cache
from pathlib import Path

import pytest
import yaml
from combinations import valid_combinations
from rendered import calls, config, function, keywords, tree

COMBOS = [(hw, scale) for task, hw, scale in valid_combinations(["classification"])]
GPU = {"cuda", "multi-gpu"}
METRICS = {"accuracy", "f1", "precision", "recall"}

pytestmark = pytest.mark.parametrize(
    ("hardware", "scale"), COMBOS, ids=["-".join(c) for c in COMBOS]
)


@pytest.fixture
def project(render, hardware: str, scale: str) -> Path:
    return render("classification", hardware, scale)


def sources(project: Path) -> dict[str, str]:
    files = [*project.rglob("*.py"), *project.rglob("*.yaml")]
    return {str(p.relative_to(project)): p.read_text() for p in files}


@cache
def training_argument_names() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def test_compute_metrics_reports_accuracy_f1_precision_recall(project, hardware, scale):
    """R-METRICS"""
    module = tree(project)
    returns = [
        n for n in ast.walk(function(module, "compute_metrics")) if isinstance(n, ast.Return)
    ]
    keys = {k.value for r in returns if isinstance(r.value, ast.Dict) for k in r.value.keys}
    assert keys >= METRICS
    (trainer,) = calls(module, "Trainer")
    assert ast.unparse(keywords(trainer)["compute_metrics"]) == "compute_metrics"
    assert config(project)["training"]["metric_for_best_model"] in METRICS | {"loss"}


def test_evaluation_is_periodic_keeps_the_best_model_and_stops_early(project, hardware, scale):
    """R-EVAL-STRATEGY, R-OVERFIT-WATCH"""
    for name in ("train", "smoke"):
        training = config(project, name)["training"]
        assert training["eval_strategy"] in ("epoch", "steps")
        assert training["save_strategy"] == training["eval_strategy"]
        assert training["load_best_model_at_end"] is True
        assert training["metric_for_best_model"]
        assert training["weight_decay"] > 0
    assert config(project)["early_stopping"]["patience"] > 0
    (trainer,) = calls(tree(project), "Trainer")
    callbacks = ast.unparse(keywords(trainer)["callbacks"])
    assert "EarlyStoppingCallback(" in callbacks and "patience" in callbacks
    assert not any("evaluation_strategy" in text for text in sources(project).values())


def test_dropout_is_a_config_value(project, hardware, scale):
    """R-OVERFIT-WATCH"""
    cfg = config(project)
    overrides = cfg["model"]["config_overrides"]
    dropout = cfg["lora"]["lora_dropout"] if scale != "small" else overrides["classifier_dropout"]
    assert 0 < dropout < 1
    (load,) = calls(tree(project), "from_pretrained")[-1:]
    assert "config_overrides" in ast.unparse(load)


def test_training_section_is_trainingarguments_with_current_names(project, hardware, scale):
    """R-USE-LIBRARY: the YAML configures the library; 4.x names would fail in transformers 5."""
    for name in ("train", "smoke"):
        training = config(project, name)["training"]
        assert set(training) <= training_argument_names(), set(training) - training_argument_names()
        assert "gradient_checkpointing" not in training  # deprecated alias in 5.x
    module = tree(project)
    (args,) = calls(module, "TrainingArguments")
    assert ast.unparse(args) == "TrainingArguments(**training)"
    (trainer,) = calls(module, "Trainer")
    assert "processing_class" in keywords(trainer) and "tokenizer" not in keywords(trainer)
    text = (project / "train.py").read_text()
    for hand_written in ("backward(", "optimizer.step", "autocast", "GradScaler", "SummaryWriter"):
        assert hand_written not in text


def test_schedule_logging_and_checkpoints_are_configured(project, hardware, scale):
    """R-LR-SCHEDULE, R-GRAD-CLIP, R-LOG-AFTER-STEP, R-FULL-CHECKPOINT"""
    training = config(project)["training"]
    assert training["lr_scheduler_type"] == "cosine"
    assert isinstance(training["warmup_steps"], float) and 0 < training["warmup_steps"] < 1
    assert training["max_grad_norm"] == 1.0
    assert training["report_to"] == "tensorboard"
    assert 0 < training["logging_steps"] < 500  # 500 is the library default
    assert training["save_total_limit"] >= 1
    assert config(project, "smoke")["training"]["logging_steps"] == 1


def test_distributed_code_only_in_multi_gpu_projects(project, hardware, scale):
    """R-DDP-ONLY-MULTI"""
    markers = ("torch.distributed", "init_process_group", "DistributedDataParallel", "fsdp")
    markers += ("ddp_", "PartialState", "main_process_first", "torchrun")
    found = {f: m for f, text in sources(project).items() for m in markers if m in text}
    if hardware == "multi-gpu":
        assert "ddp_backend" in config(project)["training"]
        # Trainer sets up the process group itself under torchrun; no hand-written DDP.
        assert "init_process_group" not in (project / "train.py").read_text()
        assert (project / "launch" / "torchrun.sh").is_file()
    else:
        assert not found
        assert not (project / "launch").exists()


def test_lora_at_medium_and_large_full_fine_tuning_at_small(project, hardware, scale):
    """R-LORA-AT-SCALE"""
    module = tree(project)
    peft_calls = calls(module, "get_peft_model")
    requirements = (project / "requirements.txt").read_text()
    if scale == "small":
        assert not peft_calls and "lora" not in config(project)
        assert "peft" not in requirements and "peft" not in (project / "train.py").read_text()
    else:
        (call,) = peft_calls
        (lora_config,) = calls(call, "LoraConfig")
        assert ast.unparse(keywords(lora_config)["task_type"]) == "TaskType.SEQ_CLS"
        assert config(project)["lora"]["r"] > 0
        assert "peft==" in requirements


def test_trainable_parameters_are_printed_and_zero_is_an_error(project, hardware, scale):
    """R-TRAINABLE"""
    module = tree(project)
    text = ast.unparse(module)
    assert "p.requires_grad" in text and "trainable parameters" in text
    guards = [
        n
        for n in ast.walk(module)
        if isinstance(n, ast.If)
        and ast.unparse(n.test) == "trainable == 0"
        and any(isinstance(s, ast.Raise) for s in n.body)
    ]
    assert guards


def test_memory_savers_at_larger_scales(project, hardware, scale):
    """R-MEMORY"""
    training = config(project)["training"]
    effective = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    assert effective == 32
    if scale == "medium":
        assert training["activation_checkpointing"] is True
        assert training["gradient_accumulation_steps"] > 1
    elif scale == "large":
        assert training["fsdp"] is True
        assert training["fsdp_config"]["activation_checkpointing"] is True
        assert "activation_checkpointing" not in training  # FSDP's own, not the redundant one
    else:
        assert "activation_checkpointing" not in training and "fsdp" not in training


def test_bf16_only_on_nvidia_gpus(project, hardware, scale):
    """R-AMP"""
    for name in ("train", "smoke"):
        training = config(project, name)["training"]
        assert training.get("bf16", False) is (hardware in GPU)
        assert "fp16" not in training
    if hardware not in GPU:
        for path, text in sources(project).items():
            assert "bf16" not in text and "bfloat16" not in text and "cuda" not in text, path


def test_pin_memory_and_workers_only_on_cuda(project, hardware, scale):
    """R-PIN-MEMORY"""
    training = config(project)["training"]
    assert training["dataloader_pin_memory"] is (hardware in GPU)
    assert (training.get("dataloader_num_workers", 0) > 0) is (hardware in GPU)


def test_mps_environment_is_set_before_torch_is_imported(project, hardware, scale):
    """R-MPS"""
    module = tree(project)
    env = {
        ast.literal_eval(c.args[0]): c.lineno
        for c in calls(module, "setdefault")
        if ast.unparse(c.func) == "os.environ.setdefault"
    }
    if hardware != "mps":
        assert not env and "MPS_FALLBACK" not in (project / "train.py").read_text()
        return
    assert set(env) == {"PYTORCH_ENABLE_MPS_FALLBACK", "TOKENIZERS_PARALLELISM"}
    heavy = [
        n.lineno
        for n in module.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        and any(
            (getattr(n, "module", None) or alias.name).split(".")[0]
            in ("torch", "transformers", "datasets", "peft")
            for alias in n.names
        )
    ]
    assert heavy and max(env.values()) < min(heavy)
    training = config(project)["training"]
    assert training["dataloader_pin_memory"] is False
    assert (
        training["gradient_accumulation_steps"] > 1 and training["per_device_train_batch_size"] <= 8
    )


def test_device_is_checked_printed_and_falls_back_with_a_warning(project, hardware, scale):
    """R-DEVICE"""
    module = tree(project)
    printed = [c for c in calls(module, "print") if "device" in ast.unparse(c)]
    assert printed
    if hardware == "cpu":
        assert config(project)["training"]["use_cpu"] is True
        return
    check = (
        "torch.backends.mps.is_available()" if hardware == "mps" else "torch.cuda.is_available()"
    )
    fallbacks = [
        n
        for n in ast.walk(module)
        if isinstance(n, ast.If) and ast.unparse(n.test) == f"not {check}"
    ]
    assert len(fallbacks) == 1
    body = ast.unparse(fallbacks[0])
    assert "warnings.warn(" in body and "use_cpu" in body
    if hardware == "multi-gpu":
        assert "ddp_backend='gloo'" in body and "bf16=False" in body


def test_only_rank_zero_prints_in_multi_gpu(project, hardware, scale):
    """R-DDP-INIT (only rank 0 prints; Trainer does the rest of the process-group work)"""
    module = tree(project)
    bare = [c for c in calls(module, "print") if isinstance(c.func, ast.Name)]
    if hardware == "multi-gpu":
        assert not bare
        assert all(ast.unparse(c.func) == "state.print" for c in calls(module, "print"))
    else:
        assert bare


def test_tokenization_happens_once_with_batched_map(project, hardware, scale):
    """R-PREPROCESS-ONCE"""
    module = tree(project)
    maps = [
        c
        for c in calls(module, "map")
        if ast.unparse(keywords(c).get("batched", ast.Constant(0))) == "True"
    ]
    assert len(maps) == 1
    preprocess = function(module, ast.unparse(maps[0].args[0]))
    assert calls(preprocess, "tokenizer")
    assert len(calls(module, "tokenizer")) == 1  # nowhere else, e.g. not per batch


def test_labels_column_and_num_labels_come_from_the_data(project, hardware, scale):
    """R-LABELS"""
    module = tree(project)
    preprocess = function(module, "preprocess")
    assert "encoded['labels'] = " in ast.unparse(preprocess)
    (load,) = [c for c in calls(module, "from_pretrained") if "num_labels" in keywords(c)]
    assert ast.unparse(load.func) == "AutoModelForSequenceClassification.from_pretrained"
    assert ast.unparse(keywords(load)["num_labels"]) == "len(id2label)"
    assert {"id2label", "label2id"} <= set(keywords(load))


def test_padding_token_falls_back_to_eos(project, hardware, scale):
    """R-PAD-TOKEN"""
    module = tree(project)
    text = ast.unparse(module)
    assert (
        "if tokenizer.pad_token is None:\n        tokenizer.pad_token = tokenizer.eos_token" in text
    )
    assert "model.config.pad_token_id = tokenizer.pad_token_id" in text
    assert calls(module, "DataCollatorWithPadding")


def test_remote_code_is_off_unless_the_config_turns_it_on(project, hardware, scale):
    """R-SAFE-LOAD"""
    assert config(project)["model"]["trust_remote_code"] is False
    loads = calls(tree(project), "from_pretrained")
    assert len(loads) == 2
    for load in loads:
        assert ast.unparse(keywords(load)["trust_remote_code"]) == "model_cfg['trust_remote_code']"
    assert "torch.save" not in (project / "train.py").read_text()  # Trainer saves safetensors


def test_outputs_are_named_after_the_project(project, hardware, scale):
    """R-OUTPUT-NAME"""
    assert config(project)["training"]["output_dir"].endswith("runs/demo")
    (save,) = calls(tree(project), "save_model")
    assert ast.unparse(save.args[0]) == "Path(training_args.output_dir) / 'final'"


def test_one_seed_is_set_before_the_model_is_built(project, hardware, scale):
    """R-SEED"""
    assert isinstance(config(project)["training"]["seed"], int)
    module = tree(project)
    (seed,) = calls(module, "set_seed")
    assert ast.unparse(seed) == "set_seed(training_args.seed)"
    (model,) = [c for c in calls(module, "from_pretrained") if "num_labels" in keywords(c)]
    assert seed.lineno < model.lineno


def test_resume_flag_reaches_the_trainer(project, hardware, scale):
    """R-RESUME"""
    (train,) = [c for c in calls(tree(project), "train") if ast.unparse(c.func) == "trainer.train"]
    resume = ast.unparse(keywords(train)["resume_from_checkpoint"])
    # --resume alone: the newest complete checkpoint (damaged ones are skipped by name).
    assert resume == "checkpoint_to_resume(args.resume, trainer.args)"


def test_default_model_has_a_classification_head(project, hardware, scale):
    """R-MODEL-FITS-TASK"""
    name = config(project)["model"]["name"]
    assert "gpt2" not in name.lower() and "instruct" not in name.lower()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["model"] == name
