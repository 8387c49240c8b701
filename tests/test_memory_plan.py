"""The memory plan at `scaffold new` (R-SCALE-FITS-HW, R-MEMORY): what each GPU holds,
shown in the README and the wizard, and refusals that say what would fit."""

import ast
import json
import os
import time

import copier
import pytest
import torch
import transformers
from test_cli import scaffold

from scaffold import memory_plan
from scaffold.answers import AnswerError, DoesNotFit, collect
from scaffold.template import template_root

GIB = 1024**3


def rows(answers: dict, phase: int = 0) -> dict[str, int]:
    return dict(memory_plan.plan(collect(answers)).phases[phase].rows)


def test_sft_medium_on_one_gpu_plans_frozen_bf16_weights_of_qwen_7b():
    # Qwen2.5-7B, by hand: per layer q/o 2*3584^2, k/v 2*3584*512, qkv bias 3584+1024,
    # MLP 3*3584*18944, norms 2*3584; 28 layers; untied embeddings 2*152064*3584; final norm.
    layer = 2 * 3584**2 + 2 * 3584 * 512 + 4608 + 3 * 3584 * 18944 + 2 * 3584
    params = 28 * layer + 2 * 152064 * 3584 + 3584
    assert params == 7_615_616_512  # the published parameter count
    plan = rows({"project_name": "x", "hardware": "cuda", "task": "sft", "scale": "medium"})
    assert plan["weights (bfloat16, frozen)"] == params * 2
    # LoRA r=16 on all seven linear layers: r * (in + out) each, 16 bytes per trainable
    # parameter for its fp32 weight's gradient (4) and AdamW's two moments (8).
    lora = 28 * 16 * ((3584 + 3584) * 2 + (3584 + 512) * 2 + 3 * (3584 + 18944))
    assert plan["gradients (LoRA)"] == lora * 4
    assert plan["AdamW state (LoRA)"] == lora * 8
    # TRL computes the loss through its own chunked LM head: no (tokens x vocabulary) logits.
    assert "loss logits" not in plan


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_sft_and_dpo_plan_no_logits_with_or_without_liger(task):
    # TRL 1.16's SFT and DPO trainers always patch in their chunked LM head; small SFT turns
    # Liger off (its layers are compiled instead) and plans no logits either.
    plan = rows({"project_name": "x", "hardware": "cuda", "task": task, "scale": "small"})
    assert "loss logits" not in plan


def test_pretraining_medium_plans_fp32_adamw_training_of_gpt2_774m():
    h, layers, vocab, block = 1280, 36, 50304, 1024
    params = layers * (12 * h * h + 2 * h) + vocab * h + block * h + h
    plan = rows({"project_name": "x", "hardware": "cuda", "task": "pretraining", "scale": "medium"})
    assert plan["weights (fp32 master)"] == params * 4
    assert plan["gradients (fp32)"] == params * 4
    assert plan["AdamW state (fp32)"] == params * 8


def test_pretraining_plan_counts_the_parameters_of_the_rendered_model(render, monkeypatch):
    project = render("pretraining", "cuda", "medium")
    monkeypatch.syspath_prepend(str(project))  # model.py imports fused_mlp.py beside it
    namespace: dict = {}
    exec(compile((project / "model.py").read_text(), "model.py", "exec"), namespace)
    config = namespace["GPTConfig"].from_preset("gpt2-774m", vocab_size=50304, block_size=1024)
    with torch.device("meta"):
        model = namespace["GPT"](config)
    params = sum(p.numel() for p in model.parameters())
    plan = rows({"project_name": "x", "hardware": "cuda", "task": "pretraining", "scale": "medium"})
    assert plan["weights (fp32 master)"] == params * 4


@pytest.mark.parametrize(
    "task, scale, auto_class",
    [
        ("sft", "small", transformers.AutoModelForCausalLM),
        ("sft", "medium", transformers.AutoModelForCausalLM),
        ("classification", "small", transformers.AutoModelForSequenceClassification),
        ("classification", "medium", transformers.AutoModelForSequenceClassification),
    ],
)
def test_plan_counts_the_parameters_transformers_builds_from_the_shipped_config(
    task, scale, auto_class
):
    answers = collect({"project_name": "x", "hardware": "cuda", "task": task, "scale": scale})
    config = transformers.AutoConfig.for_model(**memory_plan.shipped_config(answers["model"]))
    with torch.device("meta"):
        model = auto_class.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    plan = memory_plan.plan(answers).phases[0].rows
    weights = next(value for label, value in plan if label.startswith("weights"))
    bytes_per = 2 if "bfloat16" in plan[0][0] else 4
    # The classifier's own head (hidden x labels) is left out of the plan.
    assert weights / bytes_per == pytest.approx(params, rel=2e-3)


def test_every_default_model_ships_its_config():
    models = template_root() / "templates" / "plan" / "models"
    for task in ("classification", "sft", "dpo", "rlhf", "pretraining", "inference"):
        for scale in ("small", "medium", "large"):
            hardware = "cpu" if scale == "small" else "multi-gpu"
            answers = collect(
                {"project_name": "x", "hardware": hardware, "gpus": 8, "task": task, "scale": scale}
            )
            assert (models / f"{answers['model'].replace('/', '--')}.json").is_file()


def test_shipped_presets_match_model_py_presets(render):
    tree = ast.parse((render("pretraining", "cpu") / "model.py").read_text())
    presets = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PRESETS"
    )
    for name, (layers, heads, width) in presets.items():
        shipped = memory_plan.shipped_config(name)
        assert (shipped["n_layer"], shipped["n_head"], shipped["n_embd"]) == (layers, heads, width)


def test_cuda_sft_medium_readme_shows_the_plan(tmp_path):
    result = scaffold(
        "new",
        "run",
        "--hardware",
        "cuda",
        "--task",
        "sft",
        "--scale",
        "medium",
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    readme = (tmp_path / "run" / "README.md").read_text()
    plan = memory_plan.plan(
        collect({"project_name": "run", "hardware": "cuda", "task": "sft", "scale": "medium"})
    )
    assert "## Memory plan" in readme
    assert "80 GiB GPUs (`--gpu-memory`)" in readme
    assert f"| weights (bfloat16, frozen) | {plan.phases[0].rows[0][1] / GIB:.1f} |" in readme
    assert f"| **total** | **{plan.phases[0].total / GIB:.1f}** |" in readme


def test_cpu_projects_have_no_memory_plan(render):
    assert "Memory plan" not in (render("sft", "cpu") / "README.md").read_text()


def test_a_model_too_big_for_one_gpu_is_refused_with_what_would_fit(tmp_path):
    result = scaffold(
        "new",
        "run",
        "--hardware",
        "cuda",
        "--task",
        "sft",
        "--scale",
        "medium",
        "--model",
        "Qwen/Qwen2.5-72B-Instruct",
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    with pytest.raises(DoesNotFit) as refused:
        collect(
            {
                "project_name": "run",
                "hardware": "cuda",
                "task": "sft",
                "scale": "medium",
                "model": "Qwen/Qwen2.5-72B-Instruct",
            }
        )
    peak = memory_plan.plan(refused.value.answers).peak
    assert f"needs {peak / GIB:.1f} GiB per GPU" in result.stderr
    assert "weights (bfloat16, frozen)" in result.stderr
    assert "What would fit:" in result.stderr
    assert "--hardware multi-gpu --gpus 8 --nodes 1 --scale large" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_suggested_alternative_fits():
    given = {
        "project_name": "run",
        "hardware": "cuda",
        "task": "sft",
        "scale": "medium",
        "model": "Qwen/Qwen2.5-72B-Instruct",
    }
    found = memory_plan.alternatives(given)
    assert found
    for flags, plan in found:
        assert plan.fits, flags


def test_a_smaller_gpu_memory_refuses_what_fits_80_gib(tmp_path):
    result = scaffold(
        "new",
        "run",
        "--hardware",
        "cuda",
        "--task",
        "sft",
        "--scale",
        "medium",
        "--gpu-memory",
        "16",
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "does not fit one GPU of 16 GiB" in result.stderr
    assert not (tmp_path / "run").exists()


def test_plain_copier_copy_refuses_what_does_not_fit(tmp_path):
    with pytest.raises(Exception, match="does not fit"):
        copier.run_copy(
            str(template_root()),
            tmp_path / "run",
            data={"hardware": "cuda", "task": "sft", "scale": "medium", "gpu_memory": 16},
            defaults=True,
            quiet=True,
            vcs_ref="HEAD",
        )


def test_a_local_model_directory_is_sized_from_its_config_json(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    config = {
        "model_type": "llama",
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (model / "config.json").write_text(json.dumps(config))
    result = scaffold(
        "new",
        "run",
        "--hardware",
        "cuda",
        "--task",
        "sft",
        "--scale",
        "medium",
        "--model",
        str(model),
        "--yes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    layer = 2 * 1024 * 1024 + 2 * 1024 * 256 + 3 * 1024 * 4096 + 2 * 1024
    params = 8 * layer + 2 * 32000 * 1024 + 1024
    readme = (tmp_path / "run" / "README.md").read_text()
    assert f"| weights (bfloat16, frozen) | {params * 2 / GIB:.1f} |" in readme
    recorded = (tmp_path / "run" / ".copier-answers.yml").read_text()
    assert "num_key_value_heads: 4" in recorded  # copier update re-renders the plan from it


def test_an_unknown_hub_model_offline_fails_fast_with_how_to_give_its_size(tmp_path):
    start = time.monotonic()
    result = scaffold(
        "new",
        "run",
        "--hardware",
        "cuda",
        "--task",
        "sft",
        "--scale",
        "medium",
        "--model",
        "some-org/some-model-7b",
        "--yes",
        cwd=tmp_path,
        env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--model-config /path/to/config.json" in result.stderr
    assert not (tmp_path / "run").exists()


def test_model_config_flag_gives_the_size_of_an_unknown_model(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "hidden_size": 896,
                "vocab_size": 151936,
                "intermediate_size": 4864,
                "num_hidden_layers": 24,
                "num_attention_heads": 14,
                "num_key_value_heads": 2,
            }
        )
    )
    answers = collect(
        {
            "project_name": "x",
            "hardware": "cuda",
            "task": "sft",
            "scale": "medium",
            "model": "some-org/some-model",
            "model_config": str(config),
        }
    )
    assert answers["model_config"]["hidden_size"] == 896
    assert memory_plan.plan(answers).fits


def test_a_missing_model_directory_is_an_answer_error(tmp_path):
    with pytest.raises(AnswerError, match="no such directory"):
        collect(
            {
                "project_name": "x",
                "hardware": "cuda",
                "task": "sft",
                "scale": "medium",
                "model": str(tmp_path / "absent"),
            }
        )


def test_multi_gpu_inference_plans_whole_replicas_for_a_model_that_fits_one_gpu():
    """R-SCALE-FITS-HW: infer.py runs Qwen2.5-7B as one replica per GPU (it fits one), so each
    GPU holds all its weights; the plan once split them over the GPUs, half of what an H200
    pair showed (docs/verified.md)."""
    answers = {"project_name": "x", "hardware": "multi-gpu", "gpus": 2, "task": "inference"}
    plan = memory_plan.plan(collect({**answers, "scale": "medium"}))
    generate = next(p for p in plan.phases if p.title == "transformers generate")
    assert dict(generate.rows)["weights (bfloat16)"] == 7_615_616_512 * 2
    assert "2 replicas" in generate.strategy


def test_multi_gpu_inference_plans_the_fewest_tensor_parallel_gpus_that_hold_the_model():
    """32B in bf16 (65 GB) takes more than half an 80 GB GPU's budget: two GPUs per replica,
    as infer.py's choose_layout picks them; 8 GPUs then make 4 replicas."""
    answers = {"project_name": "x", "hardware": "multi-gpu", "gpus": 8, "task": "inference"}
    plan = memory_plan.plan(collect({**answers, "scale": "large"}))
    by_title = {p.title: p for p in plan.phases}
    assert dict(by_title["vLLM"].rows)["weights (bfloat16, 1/2 per GPU)"] > 30 * GIB
    assert "tensor parallel 2" in by_title["vLLM"].strategy
    assert "2 GPUs per replica, 4 replicas" in by_title["transformers generate"].strategy
