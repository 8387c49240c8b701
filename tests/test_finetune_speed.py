"""Fine-tuning speed: CUDA projects carry the fast settings, CPU and MPS keep what works there.

Padding-free batches put a batch's examples end to end in one row; a real forward pass with
a tiny model checks that no example attends to another (the correctness claim of padding-free).
"""

import ast
import dataclasses

import pytest
import torch
from rendered import calls, config, function, keywords, tree
from test_pins import template_gpu_pins
from trainable import ready, run_smoke
from transformers import AutoModelForCausalLM, Qwen2Config, TrainingArguments
from transformers.modeling_layers import GradientCheckpointingLayer
from trl import DPOConfig, SFTConfig
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

GPU = ["cuda", "multi-gpu"]
NO_GPU = ["cpu", "mps"]
CONFIG_CLASS = {"sft": SFTConfig, "dpo": DPOConfig, "classification": TrainingArguments}


@pytest.mark.parametrize("task", ["sft", "dpo", "classification"])
@pytest.mark.parametrize("hardware", GPU + NO_GPU)
def test_attention_kernel_is_a_config_value_passed_to_from_pretrained(render, task, hardware):
    project = render(task=task, hardware=hardware)
    # flex_attention measured fastest for padding-free SFT batches on an H100; the smoke
    # config runs on the CPU, where sdpa is the kernel.
    fast = "flex_attention" if task == "sft" and hardware in GPU else "sdpa"
    assert config(project, "train")["model"]["attn_implementation"] == fast
    assert config(project, "smoke")["model"]["attn_implementation"] == "sdpa"
    (load,) = calls(tree(project), "from_pretrained")[1:]  # after the tokenizer's
    assert ast.unparse(keywords(load)["attn_implementation"]) == "model_cfg['attn_implementation']"


@pytest.mark.parametrize("hardware, scale", [("cuda", "medium"), ("multi-gpu", "large")])
def test_sft_that_checkpoints_activations_attends_with_sdpa_not_flex(render, hardware, scale):
    """The LoRA (medium) and FSDP (large) SFT projects checkpoint activations and keep sdpa,
    the kernel they were run with at full size; flex_attention was not run at their scale."""
    cfg = config(render(task="sft", hardware=hardware, scale=scale), "train")
    checkpointing = cfg["training"].get("activation_checkpointing") or cfg["training"].get(
        "fsdp_config", {}
    ).get("activation_checkpointing")
    assert checkpointing is True
    assert cfg["model"]["attn_implementation"] == "sdpa"


@pytest.mark.parametrize("hardware", GPU)
def test_gpu_sft_compiles_flex_attention_for_any_batch_length(render, hardware):
    """Padding-free batches change length every step. flex_attention's kernels, compiled for
    the first batch's exact length, took minutes to build on an H100 at 32 examples
    (benchmarks/README.md): with flex_attention, dynamo compiles for any length at once."""
    build = function(tree(render(task="sft", hardware=hardware)), "build_trainer")
    fallback, branch = sorted(
        (
            node
            for node in ast.walk(build)
            if isinstance(node, ast.If)
            and ast.unparse(node.test) == "model_cfg['attn_implementation'] == 'flex_attention'"
        ),
        key=lambda node: node.lineno,
    )
    # The CPU fallback swaps flex_attention for sdpa first; then, on a GPU:
    assert ast.unparse(fallback.body) == "model_cfg['attn_implementation'] = 'sdpa'"
    (assign,) = branch.body
    assert ast.unparse(assign) == "torch._dynamo.config.assume_static_by_default = False"


def test_a_cuda_sft_project_trains_on_a_machine_without_cuda_despite_flex_attention(
    render, tmp_path
):
    """R-DEVICE: flex_attention, the cuda SFT default, has no backward on the CPU; the CPU
    fallback swaps it for sdpa instead of failing in the first backward pass."""
    project = ready(render(task="sft", hardware="cuda"), tmp_path / "project")
    result = run_smoke(
        project, "train.py", "--model.attn_implementation", "flex_attention",
        "--training.max_steps", "2", "--training.output_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CUDA is not available" in result.stderr
    assert "train_loss" in result.stdout + result.stderr


@pytest.mark.parametrize("task", ["sft", "dpo", "classification"])
@pytest.mark.parametrize("hardware", GPU + NO_GPU)
def test_every_training_key_is_an_option_of_the_pinned_config_class(render, task, hardware):
    # Names changed in transformers 5 / TRL 1.x; `training` is passed to the config as-is.
    options = {field.name for field in dataclasses.fields(CONFIG_CLASS[task])}
    project = render(task=task, hardware=hardware)
    for name in ("train", "smoke"):
        assert set(config(project, name)["training"]) <= options


@pytest.mark.parametrize("hardware", GPU)
def test_gpu_sft_project_batches_padding_free(render, hardware):
    project = render(task="sft", hardware=hardware)
    for name in ("train", "smoke"):  # smoke too: the project's smoke test runs R-LOSS-MASK on it
        cfg = config(project, name)
        assert cfg["data"]["padding_free"] is True and cfg["training"]["packing"] is False
    build = function(tree(project), "build_trainer")
    (collator,) = calls(build, "DataCollatorForLanguageModeling")
    assert ast.unparse(keywords(collator)["padding_free"]) == "True"
    (trainer,) = calls(build, "SFTTrainer")
    assert ast.unparse(keywords(trainer)["data_collator"]) == "collator"
    # R-LOSS-MASK: the per-example check still runs on the trainer's tokenized data.
    assert calls(build, "check_loss_mask")


@pytest.mark.parametrize("hardware", NO_GPU)
def test_cpu_and_mps_sft_projects_pad_each_batch(render, hardware):
    project = render(task="sft", hardware=hardware)
    for name in ("train", "smoke"):
        assert config(project, name)["data"]["padding_free"] is False


def build_trainer_branches(project) -> list[ast.If]:
    """build_trainer's if-statements, outermost first."""
    build = function(tree(project), "build_trainer")
    return [n for n in ast.walk(build) if isinstance(n, ast.If)]


def cpu_fallback(project) -> str:
    """The source of build_trainer's branch for a machine without CUDA."""
    branches = build_trainer_branches(project)
    return ast.unparse(next(n for n in branches if "cuda" in ast.unparse(n.test)))


def compile_branch(project) -> ast.If:
    """build_trainer's one `if model_cfg["compile_layers"]:`, where the layers are compiled."""
    branches = build_trainer_branches(project)
    (branch,) = (n for n in branches if ast.unparse(n.test) == "model_cfg['compile_layers']")
    return branch


@pytest.mark.parametrize("task", ["sft", "dpo"])
@pytest.mark.parametrize("hardware", GPU)
def test_gpu_trl_projects_use_liger_kernels_and_pin_them(render, task, hardware):
    """Where the decoder layers run eagerly: LoRA SFT and DPO (small projects compile them)."""
    project = render(task=task, hardware=hardware, scale="medium")
    for name in ("train", "smoke"):
        assert config(project, name)["training"]["use_liger_kernel"] is True
    requirements = (project / "requirements.txt").read_text()
    assert f"liger-kernel=={template_gpu_pins()['liger-kernel']}\n" in requirements  # R-PINNED
    # R-DEVICE: the CPU fallback (the smoke tests run it) turns the Triton kernels off.
    assert "training['use_liger_kernel'] = False" in cpu_fallback(project)


@pytest.mark.parametrize("task", ["sft", "dpo"])
@pytest.mark.parametrize("hardware", GPU)
def test_gpu_small_trl_projects_compile_each_decoder_layer_instead_of_liger(render, task, hardware):
    """Small GPU SFT and DPO compile their decoder layers: 1.8x (SFT) and 1.2x (DPO) the eager
    layers with Liger's kernels on an H100 (benchmarks/README.md). torch.compile cannot trace
    Liger's kernels, so they are off, and not pinned."""
    project = render(task=task, hardware=hardware)
    for name in ("train", "smoke"):
        cfg = config(project, name)
        assert cfg["model"]["compile_layers"] is True
        assert cfg["training"]["use_liger_kernel"] is False
    assert "liger" not in (project / "requirements.txt").read_text()
    assert calls(compile_branch(project), "compile_layers")
    # R-DEVICE: the CPU fallback (the smoke tests run it) runs the layers eagerly.
    assert "model_cfg['compile_layers'] = False" in cpu_fallback(project)


@pytest.mark.parametrize("hardware", GPU)
def test_gpu_dpo_compiles_the_reference_layers_as_well_as_the_policy(render, hardware):
    """The frozen reference runs a forward pass over every batch, as the policy does: its layers
    are compiled too, unless the trainer precomputed its log-probs and holds no reference."""
    compiled = compile_branch(render(task="dpo", hardware=hardware))
    compiled_models = [ast.unparse(c.args[0]) for c in calls(compiled, "compile_layers")]
    assert compiled_models == ["trainer.model", "trainer.ref_model"]
    (guard,) = (n for n in compiled.body if isinstance(n, ast.If))
    assert ast.unparse(guard.test) == "trainer.ref_model is not None"


def rendered_compile_layers(project):
    """train.py's compile_layers, run here without the rest of the project."""
    source = ast.Module([function(tree(project), "compile_layers")], type_ignores=[])
    namespace = {"torch": torch, "GradientCheckpointingLayer": GradientCheckpointingLayer}
    exec(compile(source, "train.py", "exec"), namespace)
    return namespace["compile_layers"]


def test_compiled_decoder_layers_train_as_the_eager_ones_for_any_batch_length(render):
    """The compiled layers give the eager model's loss and gradients, with checkpointing on as in
    the GPU config, on padding-free batches of two lengths; parameter names do not change, so a
    checkpoint loads into an uncompiled model."""
    compile_layers = rendered_compile_layers(render(task="sft", hardware="cuda"))
    torch._dynamo.reset()
    eager, compiled = tiny_causal_lm().train(), tiny_causal_lm().train()
    for model in (eager, compiled):
        model.activation_checkpointing_enable({"use_reentrant": False})
    compile_layers(compiled)
    assert all(layer._compiled_call_impl is not None for layer in compiled.model.layers)
    assert list(compiled.state_dict()) == list(eager.state_dict())

    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    for lengths in ((7, 12, 5), (30, 3)):
        examples = [{"input_ids": list(range(3, 3 + n)), "labels": list(range(3, 3 + n))}
                    for n in lengths]  # fmt: skip
        batch = collator(examples)
        inputs = {k: batch[k] for k in ("input_ids", "position_ids", "labels")}
        losses = []
        for model in (eager, compiled):
            model.zero_grad()
            loss = model(**inputs, use_cache=False).loss
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
        for (name, want), got in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_reference_layers_give_the_eager_log_probs_on_padded_batches(render):
    """DPO's reference runs its compiled layers without gradients, on padded pairs whose length
    changes from batch to batch: its log-probs are the eager model's."""
    compile_layers = rendered_compile_layers(render(task="dpo", hardware="cuda"))
    torch._dynamo.reset()
    eager, compiled = tiny_causal_lm(), tiny_causal_lm()
    compile_layers(compiled)
    assert all(layer._compiled_call_impl is not None for layer in compiled.model.layers)
    for lengths in ((9, 4), (17, 6, 11)):
        longest = max(lengths)
        input_ids = torch.zeros(len(lengths), longest, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, n in enumerate(lengths):  # right-padded, as TRL pads the pairs
            input_ids[row, :n] = torch.arange(3, 3 + n)
            attention_mask[row, :n] = 1
        with torch.no_grad():
            want, got = (m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
                         for m in (eager, compiled))  # fmt: skip
            want, got = want.logits.log_softmax(-1), got.logits.log_softmax(-1)
        real = attention_mask.bool()
        torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-5)


def test_a_model_without_transformers_decoder_layers_is_one_clear_message(render):
    """R-CONFIG: a remote-code model whose layers transformers does not know cannot be compiled
    layer by layer; the message says which setting to change."""
    compile_layers = rendered_compile_layers(render(task="sft", hardware="cuda"))
    with pytest.raises(SystemExit, match="set model.compile_layers: false"):
        compile_layers(torch.nn.Sequential(torch.nn.Linear(4, 4)))


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_compiling_the_layers_with_liger_kernels_is_one_clear_message(render, tmp_path, task):
    """R-CONFIG: torch.compile cannot trace Liger's kernels; the project says so before it loads
    anything, wherever it runs."""
    project = ready(render(task=task, hardware="cuda"), tmp_path / "project")
    result = run_smoke(project, "train.py", "--training.use_liger_kernel", "true")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "model.compile_layers and training.use_liger_kernel do not go together" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("task", ["sft", "dpo", "classification"])
@pytest.mark.parametrize("hardware", NO_GPU)
def test_cpu_and_mps_projects_carry_no_gpu_kernels(render, task, hardware):
    project = render(task=task, hardware=hardware)
    assert "liger" not in (project / "requirements.txt").read_text()
    for name in ("train", "smoke"):
        training = config(project, name)["training"]
        assert "use_liger_kernel" not in training
        # R-PIN-MEMORY: no pinned memory and no worker processes off CUDA.
        assert training["dataloader_pin_memory"] is False
        assert "dataloader_persistent_workers" not in training


def test_classification_projects_use_liger_only_where_it_applies(render):
    # Liger's instance patch swaps in a causal-LM forward: wrong for a sequence classifier.
    project = render(task="classification", hardware="cuda")
    assert "use_liger_kernel" not in config(project)["training"]
    assert "liger" not in (project / "requirements.txt").read_text()


@pytest.mark.parametrize("task", ["sft", "dpo", "classification"])
@pytest.mark.parametrize("hardware", GPU)
def test_gpu_projects_keep_pinned_persistent_dataloader_workers(render, task, hardware):
    # R-PIN-MEMORY: pinned memory and worker processes on CUDA, kept across epochs and evals.
    training = config(render(task=task, hardware=hardware))["training"]
    assert training["dataloader_pin_memory"] is True
    assert training["dataloader_num_workers"] > 0
    assert training["dataloader_persistent_workers"] is True


@pytest.mark.parametrize("hardware", GPU)
def test_gpu_classification_batches_texts_of_similar_length(render, hardware):
    project = render(task="classification", hardware=hardware)
    for name in ("train", "smoke"):
        assert config(project, name)["training"]["train_sampling_strategy"] == "group_by_length"
    choices = TrainingArguments.__dataclass_fields__["train_sampling_strategy"].metadata["choices"]
    assert "group_by_length" in choices


@pytest.mark.parametrize("hardware", NO_GPU)
def test_cpu_and_mps_classification_keep_random_batches(render, hardware):
    training = config(render(task="classification", hardware=hardware))["training"]
    assert "train_sampling_strategy" not in training  # the default: random


def tiny_causal_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    shape = Qwen2Config(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return AutoModelForCausalLM.from_config(shape, attn_implementation="sdpa").eval()


def test_padding_free_batch_keeps_every_example_to_itself():
    # A padding-free batch (as train.py builds it) gives every token the logits it gets when its
    # example runs alone: attention never crosses from one example into another.
    model = tiny_causal_lm()
    examples = [list(range(3, 3 + n)) for n in (7, 12, 5)]
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collator([{"input_ids": ids} for ids in examples])
    assert batch["input_ids"].shape == (1, sum(map(len, examples)))  # one row, no padding
    assert "attention_mask" not in batch

    # use_cache=False as SFTTrainer.compute_loss passes it: with a KV cache transformers reads the
    # row as one sequence being generated and builds no per-example mask.
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in examples]
        # Without the per-example position_ids the row is one long sequence: logits change.
        unmasked = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked, torch.cat(alone), atol=1e-3)


def test_padding_free_loss_equals_the_loss_over_the_examples_one_by_one():
    model = tiny_causal_lm()
    examples = [[5, 9, 11, 13, 17, 19], [23, 29, 31], [37, 41, 43, 47, 53]]
    labels = [[-100, -100, 11, 13, 17, 19], [-100, 29, 31], [-100, -100, -100, 47, 53]]
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collator(
        [{"input_ids": i, "labels": lab} for i, lab in zip(examples, labels, strict=True)]
    )
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "position_ids", "labels")}
        packed = model(**inputs, use_cache=False).loss
        # The per-token mean over the same completion tokens, each example run alone.
        losses, counts = [], []
        for ids, lab in zip(examples, labels, strict=True):
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([lab]))
            count = sum(label != -100 for label in lab[1:])
            losses.append(out.loss * count)
            counts.append(count)
    torch.testing.assert_close(packed, sum(losses) / sum(counts), rtol=1e-5, atol=1e-6)
