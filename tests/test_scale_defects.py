"""Issue 7's scale defects in the fine-tuning and inference templates, one rule each.

Each test reads a rendered project (configs as YAML, Python as ASTs) or imports a function
of a rendered script and runs it on real model shapes (built on the meta device: no weights,
no hub). vLLM is not installed here: its path is checked by reading the code only.
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from rendered import calls, config, function, keywords, tree
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

GIB = 2**30
# The default models' shapes, from their config.json on the hub.
QWEN25 = {
    "0.5B": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
             "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
             "tie_word_embeddings": True},
    "7B": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
           "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
    "32B": {"hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
            "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064},
}  # fmt: skip
BF16 = {"dtype": "bfloat16", "trust_remote_code": False}
TINY = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
RANK_SCRIPT = Path(__file__).with_name("fsdp_loading_rank.py")
PROMPT = [[5, 17, 42, 99, 7, 3]]  # the input fsdp_loading_rank.py scores


def load_script(project: Path, name: str):
    """Import a rendered script as a module (its `main` does not run)."""
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location(f"rendered_{name}", project / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("config", None)  # the rendered config.py
    return module


@pytest.fixture(scope="module")
def infer(render):
    return load_script(render("inference", "multi-gpu", "large", gpus=8), "infer")


def budget(gib: int, utilization: float = 0.9) -> float:
    return utilization * gib * GIB


@pytest.mark.parametrize("size", ["0.5B", "7B"])
def test_r_scale_fits_hw_model_that_fits_one_gpu_runs_a_replica_per_gpu(infer, size):
    # Issue 7: Qwen2.5 at --gpus 8 got tensor parallel 7 (28 heads; 4 KV heads).
    shape = Qwen2Config(**QWEN25[size])
    weights = infer.weight_bytes(shape, BF16)
    assert infer.fit_tensor_parallel(shape, weights, 8, budget(80)) == 1


@pytest.mark.parametrize("gpu_gib, group", [(80, 2), (40, 4)])
def test_r_scale_fits_hw_model_too_big_for_one_gpu_is_split_over_the_fewest_that_hold_it(
    infer, gpu_gib, group
):
    shape = Qwen2Config(**QWEN25["32B"])
    weights = infer.weight_bytes(shape, BF16)
    assert 60 * GIB < weights < 62 * GIB  # 32.8B parameters in bf16
    assert infer.fit_tensor_parallel(shape, weights, 8, budget(gpu_gib)) == group


@pytest.mark.parametrize(
    "size, gpus, sizes",
    [("7B", 8, [1, 2, 4]), ("0.5B", 8, [1, 2]), ("32B", 8, [1, 2, 4, 8]), ("7B", 6, [1, 2])],
)
def test_r_scale_fits_hw_tensor_parallel_divides_heads_kv_heads_and_mlp_width(
    infer, size, gpus, sizes
):
    shape = Qwen2Config(**QWEN25[size])
    assert infer.tensor_parallel_sizes(shape, gpus) == sizes
    # A 7B forced onto several GPUs (a small GPU) takes 4 of 8, never 7 (28 % 7 == 0, 4 % 7 != 0).
    if size == "7B" and gpus == 8:
        weights = infer.weight_bytes(shape, BF16)
        assert infer.fit_tensor_parallel(shape, weights, 8, budget(12)) == 4


def test_r_scale_fits_hw_inference_layout_is_chosen_at_run_time_not_fixed_in_the_config(render):
    project = render("inference", "multi-gpu", "large", gpus=8)
    for name in ("train", "smoke"):
        engine = config(project, name)["engine"]
        assert engine["tensor_parallel_size"] is None and engine["replicas"] is None
    module = tree(project, "infer.py")
    main = function(module, "main")
    assert calls(main, "choose_layout") and calls(main, "run_replicas")
    llm = calls(module, "LLM")[0]
    assert keywords(llm)["tensor_parallel_size"].id == "tensor_parallel"
    # Replicas are processes of their own, each started before CUDA is touched in it.
    replica = function(module, "run_replica")
    assert "CUDA_VISIBLE_DEVICES" in ast.unparse(replica.body[1])  # after the docstring
    spawn = calls(function(module, "run_replicas"), "get_context")[0]
    assert spawn.args[0].value == "spawn"


# --- FSDP + LoRA at large scale: no full copy of the model per rank ------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer Qwen2 (rotary tables: non-persistent buffers) saved like a hub checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model"
    AutoModelForCausalLM.from_config(Qwen2Config(**TINY)).save_pretrained(path)
    return path


def run_ranks(project: Path, model_dir: Path, kind: str, out: Path) -> list[dict]:
    """fsdp_loading_rank.py on 2 CPU ranks (gloo); what each rank wrote."""
    out.mkdir()
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(RANK_SCRIPT), str(project), str(model_dir), kind, str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize(
    "task, kind",
    [("sft", "policy"), ("dpo", "policy"), ("classification", "classifier"), ("rlhf", "policy")],
)
def test_r_lora_at_scale_fsdp_ranks_load_no_weights_and_get_rank_0s_by_broadcast(
    render, tiny_checkpoint, tmp_path, task, kind
):
    # Issue 7: every rank materialised the whole model in host RAM before the trainer sharded
    # it (~8 x 65 GB for 32B on one node). Now rank 1 builds it on the meta device, and the
    # sharding that the Trainer runs under FSDP fills it from rank 0.
    project = render(task, "multi-gpu", "large")
    first, second = run_ranks(project, tiny_checkpoint, kind, tmp_path / "ranks")
    assert (first["device_map"], second["device_map"]) == (None, "meta")
    assert first["loaded"]["meta_parameters"] == 0
    assert second["loaded"]["meta_parameters"] == second["loaded"]["parameters"]  # no weights
    assert second["loaded"]["meta_buffers"] == 0  # real rotary tables, which no broadcast carries
    for rank in (first, second):
        assert rank["sharded"]["meta_parameters"] == 0 and rank["sharded"]["meta_buffers"] == 0
        assert rank["sharded_parameters"] == rank["sharded"]["parameters"]  # all FSDP2 shards
    assert first["checksum"] == second["checksum"]  # the same full weights on both ranks
    assert first["logits"] == second["logits"]
    if kind == "policy":  # fresh LoRA adapters change nothing: these are the checkpoint's logits
        reference = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
        with torch.no_grad():
            expected = reference(input_ids=torch.tensor(PROMPT)).logits.float().flatten()
        assert first["logits"] == pytest.approx(expected.tolist(), abs=2e-2)


def test_r_reward_guard_grpo_reward_model_has_real_weights_on_every_rank(
    render, tiny_checkpoint, tmp_path
):
    # GRPO places the reward model whole on every GPU. With rank-0-only loading switched on
    # (by the reward stage), the weights its base checkpoint lacks (the score head) stayed
    # empty (meta) on rank 1; load_reward_model must load real weights everywhere.
    reward_dir = tmp_path / "reward_model"
    base = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=1)
    config_ = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules="all-linear")
    get_peft_model(base, config_).save_pretrained(reward_dir)
    words = Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<unk>").save_pretrained(reward_dir)
    project = render("rlhf", "multi-gpu", "large")
    first, second = run_ranks(project, reward_dir, "reward", tmp_path / "ranks")
    for rank in (first, second):
        assert rank["loaded"]["meta_parameters"] == 0 and rank["loaded"]["meta_buffers"] == 0
    assert first["logits"] == second["logits"]


@pytest.mark.parametrize("task", ["sft", "dpo", "classification", "rlhf"])
def test_r_lora_at_scale_large_configs_load_on_rank_0_only(render, task):
    project = render(task, "multi-gpu", "large")
    cfg = config(project)
    sections = ["reward_training", "policy_training"] if task == "rlhf" else ["training"]
    for section in sections:
        assert cfg[section]["fsdp"] is True
        assert cfg[section]["fsdp_config"]["cpu_ram_efficient_loading"] is True
    module = tree(project)
    # The models the trainers shard (not the tokenizers, not GRPO's unsharded reward model).
    loads = [
        call
        for call in calls(module, "from_pretrained")
        if ast.unparse(call.func).startswith("AutoModelFor")
        and ast.unparse(call.args[0]) in ("model_cfg['name']", "rm_cfg['name']")
    ]
    assert len(loads) == (2 if task == "rlhf" else 1)
    for call in loads:
        assert ast.unparse(keywords(call)["device_map"]).startswith("fsdp_device_map(")


# --- precision: bf16 where the GPU has it, else fp16 -------------------------------------


def bf16_branch(module: ast.Module) -> str:
    """The source run when bf16 is unsupported: the `if` body plus the functions it calls."""
    branches = [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.If) and calls(node.test, "is_bf16_supported")
    ]
    assert len(branches) == 1, "bf16 support is checked in one place"
    check = calls(branches[0].test, "is_bf16_supported")[0]
    # Without it a V100 passes: torch counts its (slow) bf16 emulation as support.
    assert ast.unparse(keywords(check)["including_emulation"]) == "False"
    body = ast.Module(body=branches[0].body, type_ignores=[])
    called = {
        c.func.id
        for c in ast.walk(body)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
    }
    helpers = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name in called]
    return ast.unparse(body) + "\n" + "\n".join(map(ast.unparse, helpers))


@pytest.mark.parametrize("task", ["sft", "dpo", "classification", "rlhf"])
@pytest.mark.parametrize(
    "hardware, scale", [("cuda", "small"), ("cuda", "medium"), ("multi-gpu", "large")]
)
def test_r_amp_trainer_uses_fp16_with_loss_scaling_where_the_gpu_has_no_bf16(
    render, task, hardware, scale
):
    # Issue 7: bf16 was hard-coded, and the Trainer refuses to start with it on a V100 or T4.
    project = render(task, hardware, scale)
    branch = bf16_branch(tree(project))
    assert "bf16=False, fp16=True" in branch  # the Trainer adds the GradScaler for fp16
    assert "'float16'" in branch  # frozen bf16 base weights become fp16 too
    assert "warn(" in branch  # said at start
    cfg = config(project)
    for section in ("reward_training", "policy_training") if task == "rlhf" else ("training",):
        assert cfg[section]["bf16"] is True


@pytest.mark.parametrize("hardware", ["cuda", "multi-gpu"])
def test_r_amp_inference_uses_float16_where_the_gpu_has_no_bf16(render, hardware):
    branch = bf16_branch(tree(render("inference", hardware, "medium"), "infer.py"))
    assert "'float16'" in branch and "warn(" in branch


@pytest.mark.parametrize("task", ["sft", "rlhf", "inference"])
@pytest.mark.parametrize("hardware", ["cpu", "mps"])
def test_r_amp_no_bf16_check_without_cuda(render, task, hardware):
    source = render(task, hardware, "small") / ("infer.py" if task == "inference" else "train.py")
    assert "is_bf16_supported" not in source.read_text()
