"""Issue 7's scale defects in the fine-tuning and inference templates, one rule each.

Each test reads a rendered project (configs as YAML, Python as ASTs) or imports a function
of a rendered script and runs it on real model shapes (built on the meta device: no weights,
no hub). vLLM is not installed here: its path is checked by reading the code only.
"""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from rendered import calls, config, function, keywords, tree
from transformers import Qwen2Config

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
