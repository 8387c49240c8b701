"""The pretraining template obeys RULES.md: each test reads rendered projects and cites a rule.

Checks read train.py / prepare_data.py / model.py as ASTs and the configs as YAML; nothing
trains here (each rendered project's own tests/test_smoke.py does, see test_smoke_projects.py).
"""

import ast
import math
import re
from pathlib import Path

import pytest
from combinations import valid_combinations
from rendered import callee, calls, config, function, keywords, tree

from scaffold import memory_plan
from scaffold.answers import collect

COMBOS = [(hw, scale) for _, hw, scale in valid_combinations(["pretraining"])]
GPU = {"cuda", "multi-gpu"}


def combos(where=lambda hw, scale: True):
    chosen = [c for c in COMBOS if where(*c)]
    return pytest.mark.parametrize(("hardware", "scale"), chosen, ids=["-".join(c) for c in chosen])


ALL = combos()
MULTI = combos(lambda hw, scale: hw == "multi-gpu")
SINGLE = combos(lambda hw, scale: hw != "multi-gpu")
ON_GPU = combos(lambda hw, scale: hw in GPU)
OFF_GPU = combos(lambda hw, scale: hw not in GPU)
FSDP = combos(lambda hw, scale: hw == "multi-gpu" and scale == "large")


@pytest.fixture
def project(render, hardware: str, scale: str) -> Path:
    return render("pretraining", hardware, scale)


def python_files(project: Path) -> list[Path]:
    return sorted(project.rglob("*.py"))


def first_line(node: ast.AST, name: str) -> int:
    found = calls(node, name)
    assert found, f"no call to {name}"
    return found[0].lineno


def forward_calls(node: ast.AST) -> list[ast.Call]:
    """`model(x, y)`: the model returns the loss (forward and loss in one compiled graph)."""
    return [c for c in calls(node, "model") if [ast.unparse(a) for a in c.args] == ["x", "y"]]


def optimizer_steps(node: ast.AST) -> list[ast.Call]:
    """`optimizer.step()`, or `scaler.step(optimizer)` where fp16 needs a loss scaler."""
    return [c for c in calls(node, "step") if "optimizer" in names(c.func) | names(c)]


def training_loop(module: ast.Module) -> ast.While:
    """The `while step < max_steps` loop of train()."""
    return next(n for n in ast.walk(function(module, "train")) if isinstance(n, ast.While))


def names(node: ast.AST) -> set[str]:
    found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return found | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def imported(module: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


# Training loop ------------------------------------------------------------------------


@ALL
def test_pretraining_steps_in_order_zero_grad_forward_backward_clip_step(project):
    """R-STEP-ORDER."""
    loop = training_loop(tree(project))
    order = [first_line(loop, "zero_grad"), forward_calls(loop)[0].lineno]
    order += [first_line(loop, n) for n in ("backward", "clip_grad_norm_")]
    steps = optimizer_steps(loop)
    assert steps, "optimizer.step() is not called in the training loop"
    assert order == sorted(order) and order[-1] < steps[0].lineno


@ALL
def test_pretraining_switches_train_and_eval_modes(project):
    """R-TRAIN-EVAL-MODE and R-NO-GRAD-EVAL: eval under no_grad, then back to train()."""
    module = tree(project)
    evaluate = function(module, "evaluate")
    decorators = [ast.unparse(d) for d in evaluate.decorator_list]
    assert "torch.no_grad()" in decorators or "torch.inference_mode()" in decorators
    assert first_line(evaluate, "eval") < first_line(evaluate, "train")
    train = function(module, "train")
    assert first_line(train, "train") < training_loop(module).lineno


@ALL
def test_pretraining_divides_loss_by_accumulation_steps(project, hardware, scale):
    """R-GRAD-ACCUM: loss / accum, one optimizer step per accum micro-batches."""
    loop = training_loop(tree(project))
    inner = next(n for n in ast.walk(loop) if isinstance(n, ast.For) and "accum" in names(n.iter))
    divisions = [
        n
        for n in ast.walk(inner)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and "accum" in names(n.right)
    ]
    assert divisions, "the micro-batch loss is not divided by the accumulation steps"
    assert not optimizer_steps(inner)
    assert not calls(inner, "zero_grad")
    if hardware == "multi-gpu" and scale != "large":
        assert calls(inner, "no_sync"), "DDP all-reduces gradients on every micro-batch"


@FSDP
def test_fsdp_project_reduce_scatters_gradients_after_every_micro_batch(project):
    """R-GRAD-ACCUM under FSDP: no set_requires_gradient_sync(False), which would keep every
    layer's whole FP32 gradient on each GPU until the last micro-batch (the memory plan counts
    sharded gradients)."""
    loop = training_loop(tree(project))
    assert "fully_shard" in (project / "train.py").read_text()
    assert not calls(loop, "set_requires_gradient_sync")
    assert not calls(loop, "no_sync")


@ALL
def test_pretraining_flattens_logits_and_shifts_targets_once(project):
    """R-LOSS-SHAPE: (B*T, C) hidden states against (B*T,) targets shifted in the dataset;
    tests/test_pretraining_speed.py checks the chunked loss against the flattened logits."""
    model_py = tree(project, "model.py")
    gpt = next(n for n in model_py.body if isinstance(n, ast.ClassDef) and n.name == "GPT")
    forward = ast.unparse(function(gpt, "forward"))
    assert "return self.loss(x, targets)" in forward
    loss = ast.unparse(function(gpt, "loss"))
    assert "x.view(-1, x.size(-1))" in loss and "targets.view(-1)" in loss
    for code in (forward, loss):
        assert "[:, 1:]" not in code and "[..., 1:]" not in code  # no second shift
    item = ast.unparse(function(tree(project), "__getitem__"))
    assert "return (window[:-1], window[1:])" in item


@ALL
def test_pretraining_device_comes_from_the_hardware_answer(project, hardware):
    """R-DEVICE: the target device with a check, else CPU with a warning; printed; batches moved."""
    source = (project / "train.py").read_text()
    module = ast.parse(source)
    train = function(module, "train")
    assert any("device" in ast.unparse(c) for c in calls(train, "info"))
    loop = ast.unparse(training_loop(module))
    assert "x.to(device" in loop and "y.to(device" in loop
    mentions = set(re.findall(r"\b(cuda|mps)\b", source))
    assert mentions == {"cpu": set(), "mps": {"mps"}}.get(hardware, {"cuda"})
    if hardware in GPU:
        assert "torch.cuda.is_available()" in source
    if hardware == "mps":
        assert "torch.backends.mps.is_available()" in source
    if hardware != "cpu":
        assert calls(module, "warn"), "no warning when falling back to the CPU"


@ALL
def test_pretraining_lr_warms_up_then_decays_by_cosine_on_every_param_group(project):
    """R-LR-SCHEDULE: computed per optimizer step and written to every param_group."""
    module = tree(project)
    loop = training_loop(module)
    assert calls(loop, "lr_at")
    group_loops = [n for n in loop.body if isinstance(n, ast.For)]
    assert any(
        ast.unparse(n.iter) == "optimizer.param_groups"
        and ast.unparse(n.body) == f"{ast.unparse(n.target)}['lr'] = lr"
        for n in group_loops
    )
    namespace = {"math": math}
    exec(compile(ast.Module([function(module, "lr_at")], []), "lr_at", "exec"), namespace)
    lr_at = namespace["lr_at"]
    t = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "lr_decay_steps": 110}
    warmup = [lr_at(s, t) for s in range(10)]
    assert warmup == sorted(warmup) and warmup[-1] == pytest.approx(1.0)
    assert lr_at(60, t) == pytest.approx(0.55) and lr_at(110, t) == pytest.approx(0.1)
    assert lr_at(500, t) == pytest.approx(0.1)


@ALL
def test_pretraining_clips_gradients_at_one_and_logs_the_norm(project):
    """R-GRAD-CLIP."""
    assert config(project)["training"]["grad_clip"] == 1.0
    loop = training_loop(tree(project))
    (clip,) = calls(loop, "clip_grad_norm_")
    assert "grad_clip" in ast.unparse(clip)
    assert "grad_norm" in ast.unparse(loop.body[-5:]) or "'grad_norm'" in ast.unparse(loop)


@ALL
def test_pretraining_stops_on_non_finite_loss_naming_step_and_checkpoint(project, hardware):
    """R-NAN-GUARD: a non-finite step is skipped before the optimizer applies it (on the
    device, through fused AdamW's found_inf; MPS checks on the host), and the run stops at
    the next sync point, before anything is saved, with a message naming step and checkpoint."""
    module = tree(project)
    loop = training_loop(module)
    step = optimizer_steps(loop)[0]
    if hardware == "mps":
        skip = next(n for n in ast.walk(loop) if isinstance(n, ast.If) and step in ast.walk(n))
        assert "isfinite(grad_norm)" in ast.unparse(skip.test)
    else:
        (skip,) = [n for n in ast.walk(loop) if "optimizer.found_inf" in ast.unparse(n)][:1]
        assert skip.lineno < step.lineno and "isfinite(grad_norm)" in ast.unparse(skip)
    (stop,) = [n for n in loop.body if isinstance(n, ast.If) and ast.unparse(n.test) == "problem"]
    assert ast.unparse(stop.body[-1]) == "raise SystemExit(problem)"  # after bar.close()
    assert stop.lineno < min(c.lineno for c in calls(loop, "save") + calls(loop, "metrics"))
    verdict = ast.unparse(function(module, "verdict"))
    assert "at step" in verdict and "Last good checkpoint" in verdict
    assert "watchdog.verdict(nonfinite_at, spike_at, last_checkpoint)" in ast.unparse(loop)


@ALL
def test_pretraining_reports_trainable_parameters_and_refuses_zero(project):
    """R-TRAINABLE."""
    train = ast.unparse(function(tree(project), "train"))
    assert "trainable" in train and "requires_grad" in train
    assert "if trainable == 0:" in train


# Choosing what to generate ------------------------------------------------------------


@SINGLE
def test_single_device_pretraining_has_no_distributed_code(project):
    """R-DDP-ONLY-MULTI: not even dead branches."""
    banned = {"init_process_group", "DistributedDataParallel", "DDP", "fully_shard"}
    banned |= {"DistributedSampler", "no_sync", "destroy_process_group", "LOCAL_RANK"}
    for path in python_files(project):
        source = path.read_text()
        module = ast.parse(source)
        assert not any("distributed" in name for name in imported(module)), path
        strings = {c.value for c in ast.walk(module) if isinstance(c, ast.Constant)}
        assert not banned & (names(module) | strings), path
        assert "torch.distributed" not in source, path
    assert not (project / "launch").exists()


@ALL
def test_pretraining_default_model_is_a_from_scratch_preset(project, scale):
    """R-MODEL-FITS-TASK: a from-scratch config, no hub checkpoint; FSDP only at large scale."""
    preset = config(project)["model"]["preset"]
    model_py = tree(project, "model.py")
    presets = next(
        n.value for n in model_py.body if isinstance(n, ast.Assign) and "PRESETS" in names(n)
    )
    assert preset in ast.literal_eval(presets)
    assert "from_pretrained" not in (project / "train.py").read_text()
    assert calls(model_py, "scaled_dot_product_attention")  # fused attention kernels
    gpt = next(n for n in model_py.body if isinstance(n, ast.ClassDef) and n.name == "GPT")
    assert "F.linear(x, self.wte.weight)" in ast.unparse(gpt)  # weight tying
    assert "LinearCrossEntropy.apply(hidden, self.wte.weight" in ast.unparse(gpt)


# Data -----------------------------------------------------------------------------------


@MULTI
def test_multi_gpu_pretraining_uses_distributed_sampler(project):
    """R-DIST-SAMPLER: DistributedSampler for train and val, set_epoch each epoch."""
    module = tree(project)
    samplers = calls(module, "DistributedSampler")
    assert len(samplers) == 2
    train_sampler = next(c for c in samplers if "train_set" in names(c))
    assert ast.unparse(keywords(train_sampler)["shuffle"]) == "True"
    batches = function(module, "batches")
    assert calls(batches, "set_epoch")
    loaders = calls(module, "DataLoader")
    assert loaders and all("sampler" in keywords(c) for c in loaders)


@ALL
def test_pretraining_loaders_never_shuffle_besides_a_sampler(project):
    """R-DIST-SAMPLER: the sampler shuffles; `shuffle=True` on a loader never appears."""
    for loader in calls(tree(project), "DataLoader"):
        assert "shuffle" not in keywords(loader)


@ALL
def test_pretraining_pins_memory_only_on_cuda(project, hardware):
    """R-PIN-MEMORY (and R-MPS: no pin_memory on Apple Silicon)."""
    source = (project / "train.py").read_text()
    if hardware in GPU:
        assert '"pin_memory": on_gpu' in source and 'on_gpu = device.type == "cuda"' in source
        assert '"num_workers": data["num_workers"] if on_gpu else 0' in source
    else:
        assert "pin_memory" not in source and "num_workers" not in source


@ALL
def test_pretraining_token_files_are_read_in_the_dtype_they_were_written(project):
    """R-MEMMAP-DTYPE: uint16 below 65536 tokens, uint32 above, recorded in meta.json."""
    prepare = (project / "prepare_data.py").read_text()
    assert "np.uint16 if vocab_size < 2**16 else np.uint32" in prepare
    assert '"dtype": np.dtype(dtype).name' in prepare and "meta.json" in prepare
    module = tree(project)
    (memmap,) = calls(module, "memmap")
    assert ast.unparse(keywords(memmap)["dtype"]) == "self.dtype"
    assert "meta.json" in ast.unparse(function(module, "read_meta"))
    train = ast.unparse(function(module, "train"))
    assert "read_meta(" in train and "meta['dtype']" in train


@ALL
def test_pretraining_tokenizes_once_before_training(project):
    """R-PREPROCESS-ONCE: train.py reads token ids; it never loads a tokenizer."""
    module = tree(project)
    assert not {"transformers", "tokenizers"} & {n.split(".")[0] for n in imported(module)}
    assert calls(tree(project, "prepare_data.py"), "from_pretrained")


# Evaluation and monitoring ---------------------------------------------------------------


@ALL
def test_pretraining_logs_python_floats_only(project):
    """R-ITEM-LOGGING: .item() / .detach(), never a graph-holding tensor."""
    module = tree(project)
    loop = ast.unparse(training_loop(module))
    assert "loss_sum += loss.detach()" in loop
    # Read at sync points only, all at once, as Python floats (tests/test_pretraining_speed.py).
    assert ".tolist()" in loop and "'grad_norm': norm" in loop
    assert "'train_loss': train_loss" in loop
    assert ".item()" in ast.unparse(function(module, "evaluate").body[-1])


@ALL
def test_pretraining_logs_after_the_optimizer_step_with_global_step(project):
    """R-LOG-AFTER-STEP: metrics after optimizer.step(); W&B optional, lazy, initialised once."""
    module = tree(project)
    loop = training_loop(module)
    step = optimizer_steps(loop)[0]
    assert all(c.lineno > step.lineno for c in calls(loop, "metrics"))
    assert all(ast.unparse(c.args[0]) == "step" for c in calls(loop, "metrics"))
    top_level = [n for n in module.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert "wandb" not in {n.split(".")[0] for n in imported(ast.Module(top_level, []))}
    logger = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "Logger")
    init = ast.unparse(function(logger, "__init__"))  # runs once, before any log
    assert "import wandb" in init and "except Exception" in init
    assert config(project)["logging"]["wandb"] is False


@ALL
def test_pretraining_logs_train_and_validation_loss(project):
    """R-OVERFIT-WATCH: train/val gap in the log; weight decay and dropout are config values."""
    loop = ast.unparse(training_loop(tree(project)))
    assert "'val_loss': val_loss" in loop and "'train_loss': train_loss" in loop
    cfg = config(project)
    assert cfg["training"]["weight_decay"] > 0 and "dropout" in cfg["model"]


# State, reproducibility, configuration -------------------------------------------------


@ALL
def test_pretraining_checkpoints_hold_full_training_state(project):
    """R-FULL-CHECKPOINT: model, optimizer, step, data position, RNG, config; last N; best."""
    module = tree(project)
    made = ast.unparse(function(module, "make_checkpoint"))
    for key in ("'model'", "'optimizer'", "**progress", "'rng'", "'config'"):
        assert key in made
    progress = next(n for n in module.body if isinstance(n, ast.Assign) and "PROGRESS" in names(n))
    assert {"step", "epoch", "batch_in_epoch"} <= set(ast.literal_eval(progress.value))
    rng = ast.unparse(function(module, "rng_state"))
    assert all(k in rng for k in ("'python'", "'numpy'", "'torch'"))
    loop = ast.unparse(training_loop(module))
    assert "ckpt_{step:06d}" in loop and "mark_best" in loop and "keep_last" in loop
    assert config(project)["checkpoint"]["keep_last"] >= 1


@ALL
def test_pretraining_resume_restores_everything(project):
    """R-RESUME: --resume loads weights, optimizer and RNG, then continues from the saved step."""
    module = tree(project)
    load = function(module, "load_checkpoint")
    restored = {callee(c) for c in ast.walk(load) if isinstance(c, ast.Call)}
    assert restored & {"load_state_dict", "set_model_state_dict", "set_state_dict"}
    assert restored & {"set_optimizer_state_dict", "set_state_dict"} or (
        len(calls(load, "load_state_dict")) == 2
    )
    assert "set_rng_state" in restored
    train = ast.unparse(function(module, "train"))
    assert "step = progress['step']" in train
    assert "progress['epoch'], progress['batch_in_epoch']" in train


@ALL
def test_pretraining_checkpoints_are_atomic_and_saved_on_interrupt(project):
    """R-SAFE-INTERRUPT: temp file + os.replace; SIGINT and SIGTERM save before exiting."""
    module = tree(project)
    save = function(module, "save_atomic")
    assert first_line(save, "save") < first_line(save, "replace")
    handlers = ast.unparse(function(module, "stop_on_signal"))
    assert "signal.signal(" in handlers
    assert "signal.SIGINT" in handlers and "signal.SIGTERM" in handlers
    loop = ast.unparse(training_loop(module))
    assert "or stopping:" in loop  # a stop request saves a checkpoint


@ALL
def test_pretraining_loads_checkpoints_with_weights_only(project):
    """R-SAFE-LOAD: every torch.load has weights_only=True; the model ships as safetensors."""
    for path in python_files(project):
        for load in calls(ast.parse(path.read_text()), "load"):
            if ast.unparse(load.func) == "torch.load":
                assert ast.unparse(keywords(load).get("weights_only", ast.Constant(None))) == "True"
    assert calls(tree(project), "save_file")
    assert all("trust_remote_code" not in p.read_text() for p in python_files(project))


@ALL
def test_pretraining_outputs_are_named_after_the_project(project):
    """R-OUTPUT-NAME."""
    assert config(project)["training"]["out_dir"] == "../runs/demo"
    assert config(project, "smoke")["training"]["out_dir"] == "../runs/demo-smoke"


@ALL
def test_pretraining_seeds_everything_before_building_the_model(project):
    """R-SEED."""
    module = tree(project)
    seeding = ast.unparse(function(module, "seed_everything"))
    assert all(s in seeding for s in ("random.seed", "np.random.seed", "torch.manual_seed"))
    train = function(module, "train")
    assert first_line(train, "seed_everything") < first_line(train, "GPT")


@MULTI
def test_multi_gpu_pretraining_builds_identical_models_then_seeds_per_rank(project):
    """R-RANK-SEED."""
    train = function(tree(project), "train")
    first, second = calls(train, "seed_everything")
    assert first.lineno < first_line(train, "GPT") < second.lineno
    assert ast.unparse(second.args[0]) == "t['seed'] + rank"


@ALL
def test_pretraining_smoke_config_mirrors_the_real_one(project):
    """R-CONFIG: the same keys in both files, so every override works on either."""

    def keys(node: dict, prefix: str = "") -> set[str]:
        found = set()
        for key, value in node.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    assert keys(config(project)) == keys(config(project, "smoke"))
    assert all(isinstance(config(project)["training"][k], float) for k in ("lr", "min_lr"))


# Hardware specifics ---------------------------------------------------------------------


@MULTI
def test_multi_gpu_pretraining_initialises_the_process_group(project, scale):
    """R-DDP-INIT: nccl on CUDA / gloo on CPU, LOCAL_RANK, set_device before the model,
    DDP(device_ids=[local_rank]) (FSDP2 at large scale), destroy at exit, rank 0 logs."""
    module = tree(project)
    main = function(module, "main")
    (init,) = calls(main, "init_process_group")
    assert ast.unparse(init.args[0]) == "'nccl' if torch.cuda.is_available() else 'gloo'"
    finally_body = next(n for n in ast.walk(main) if isinstance(n, ast.Try)).finalbody
    assert calls(ast.Module(finally_body, []), "destroy_process_group")
    train = function(module, "train")
    assert "os.environ['LOCAL_RANK']" in ast.unparse(train)
    assert first_line(train, "set_device") < first_line(train, "GPT")
    if scale == "large":
        assert calls(train, "fully_shard") and not calls(train, "DDP")
    else:
        (ddp,) = calls(train, "DDP")
        assert "[local_rank]" in ast.unparse(keywords(ddp)["device_ids"])
    assert "enabled=rank == 0" in ast.unparse(train)


@ALL
def test_pretraining_uses_bf16_autocast_only_on_cuda(project, hardware, scale):
    """R-AMP: torch.autocast("cuda", bfloat16) on CUDA, or fp16 with torch.amp.GradScaler("cuda")
    where the GPU lacks bf16 (decided at run time, logged; FSDP refuses fp16); FP32 elsewhere;
    never torch.cuda.amp."""
    sources = "\n".join(p.read_text() for p in python_files(project))
    assert "torch.cuda.amp" not in sources
    module = tree(project)
    autocasts = calls(module, "autocast")
    if hardware in GPU and scale == "large":  # FSDP
        (autocast,) = autocasts
        assert ast.unparse(keywords(autocast)["dtype"]) == "torch.bfloat16"
        assert "GradScaler" not in sources and "is_bf16_supported()" in sources
    elif hardware in GPU:
        (autocast,) = autocasts
        assert ast.unparse(autocast.args[0]) == "'cuda'"
        assert ast.unparse(keywords(autocast)["dtype"]) == "amp_dtype"
        train = ast.unparse(function(module, "train"))
        assert "torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16" in train
        assert "torch.amp.GradScaler('cuda', enabled=amp_dtype == torch.float16)" in train
        assert calls(function(module, "train"), "info")  # the choice is logged
        loop = ast.unparse(training_loop(module))
        assert "scaler.scale(loss).backward()" in loop and "scaler.step(optimizer)" in loop
        assert loop.index("scaler.unscale_(optimizer)") < loop.index("clip_grad_norm_")
    else:
        assert not autocasts and "bfloat16" not in sources and "float16" not in sources


@ALL
def test_pretraining_mps_sets_fallback_and_uses_smaller_batches(project, hardware, scale, render):
    """R-MPS: PYTORCH_ENABLE_MPS_FALLBACK before torch is imported; smaller batches, more accum."""
    source = (project / "train.py").read_text()
    if hardware != "mps":
        assert "PYTORCH_ENABLE_MPS_FALLBACK" not in source
        return
    assert source.index("PYTORCH_ENABLE_MPS_FALLBACK") < source.index("import torch")
    mps, cuda = (
        config(project)["training"],
        config(render("pretraining", "cuda", scale))["training"],
    )
    assert mps["batch_size"] < cuda["batch_size"] and mps["grad_accum_steps"] > 1


@ALL
def test_pretraining_checkpoints_activations_only_at_large_scale_where_they_do_not_fit(
    project, scale
):
    """R-MEMORY: gradient checkpointing costs throughput (the large FSDP loop ran 1.18x slower
    with it on an H200), so it is on only at large scale on GPUs too small for the
    activations: gpt-6.7b on the fixture's 2 x 80 GiB. 774M fits one at micro-batch 8 without it.
    Accumulation keeps the batches."""
    cfg = config(project)
    assert cfg["model"]["gradient_checkpointing"] is (scale == "large")
    assert calls(tree(project, "model.py"), "checkpoint")
    assert cfg["training"]["grad_accum_steps"] >= 1


@pytest.mark.parametrize(("gpus", "checkpointing"), [(2, True), (4, False), (8, False)])
def test_large_pretraining_checkpoints_activations_when_the_plan_without_it_does_not_fit(
    gpus, checkpointing
):
    """R-MEMORY: the memory plan decides. FSDP over more 80 GiB GPUs leaves each a smaller shard
    of the weights and optimizer state, and room for every layer's activations."""
    answers = collect(
        {"project_name": "x", "task": "pretraining", "hardware": "multi-gpu"}
        | {"scale": "large", "gpus": gpus}
    )
    plan = memory_plan.plan(answers)
    without = memory_plan.plan(answers | {"plan_checkpointing": False})
    assert ("activations (checkpointed)" in dict(plan.phases[0].rows)) is checkpointing
    assert plan.fits
    assert (not without.fits) is checkpointing


@ON_GPU
def test_gpu_pretraining_uses_fused_adamw_and_tf32(project):
    """R-AMP: TF32 matmuls and fused AdamW on CUDA (fused everywhere: it skips steps on device).
    TF32 through set_float32_matmul_precision: compile's max-autotune refuses a mix with the
    per-backend fp32_precision API (seen on an H100, torch 2.11)."""
    (precision,) = calls(tree(project), "set_float32_matmul_precision")
    assert [ast.literal_eval(arg) for arg in precision.args] == ["high"]
    assert "fp32_precision" not in (project / "train.py").read_text()
    (adamw,) = calls(tree(project), "AdamW")
    assert ast.unparse(keywords(adamw)["fused"]) == "True"


@OFF_GPU
def test_cpu_and_mps_pretraining_do_not_compile_by_default(project):
    """torch.compile is a config switch: off where it does not pay (and in every smoke config)."""
    assert config(project)["training"]["compile"] is False
    assert config(project, "smoke")["training"]["compile"] is False
