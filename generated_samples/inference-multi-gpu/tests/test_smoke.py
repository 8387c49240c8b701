"""Smoke test: generate with a tiny local model (built here, no model hub) and check the output.

Runs on a CPU in well under a minute; `configs/smoke.yaml` holds the settings.
Without CUDA (or without vLLM) infer.py warns and falls back to transformers `generate`,
which is the path these tests run on a CPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "prompts.jsonl"
# A ChatML template, like the default model's; the tokenizer has no pad token, so infer.py
# must set one (R-PAD-TOKEN).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_model(out_dir: Path) -> Path:
    """A ~300-token byte-level BPE and a 2-layer Llama, saved with save_pretrained."""
    texts = [line for line in PROMPTS.read_text().splitlines() if line.strip()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[:2],
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def infer(
    model_dir: Path, output_file: Path, *extra: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "infer.py", "--config", "configs/smoke.yaml"]
    cmd += ["--model.name", str(model_dir), "--data.output_file", str(output_file), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("smoke") / "tiny-model")


@pytest.fixture(scope="module")
def generations(tiny_model: Path) -> list[dict]:
    output_file = tiny_model.parent / "run" / "generations.jsonl"
    result = infer(tiny_model, output_file)
    assert result.returncode == 0, result.stderr[-3000:]
    if not torch.cuda.is_available():
        assert "generating with transformers" in result.stderr  # the fallback warned (R-DEVICE)
    return read_jsonl(output_file)


def test_one_generation_per_prompt_in_input_order(generations: list[dict]) -> None:
    prompts = read_jsonl(PROMPTS)
    assert [row["id"] for row in generations] == [row["id"] for row in prompts]
    for prompt, row in zip(prompts, generations, strict=True):
        assert {k: row[k] for k in prompt} == prompt  # the input row comes back as it was
        assert isinstance(row["generation"], str) and row["generation"]


def test_batching_does_not_change_greedy_generations(tiny_model, generations, tmp_path) -> None:
    # Left padding + attention mask (R-PAD-TOKEN): a prompt's greedy output is the same
    # whether it shares a padded batch (batch_size 4) or runs alone.
    # On a GPU, padded and unpadded batches run different kernels, and a random tiny model's
    # near-tied logits can flip; on the CPU in fp32 both are exact, so compare there.
    cpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    runs = {size: tmp_path / f"batch-{size}.jsonl" for size in ("4", "1")}
    for size, output_file in runs.items():
        result = infer(tiny_model, output_file, "--generation.batch_size", size, env=cpu)
        assert result.returncode == 0, result.stderr[-3000:]
    batched, single = (read_jsonl(path) for path in runs.values())
    assert [row["generation"] for row in single] == [row["generation"] for row in batched]


def test_replicas_share_the_prompts_and_merge_them_in_input_order(
    tiny_model: Path, generations: list[dict], tmp_path: Path
) -> None:
    # Data parallel: each replica process (one per GPU on a GPU node; CPU processes here)
    # generates a contiguous share of the prompts, and their outputs are concatenated.
    output_file = tmp_path / "replicas.jsonl"
    result = infer(tiny_model, output_file, "--engine.replicas", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replica 0: " in result.stdout and "replica 1: " in result.stdout
    assert read_jsonl(output_file) == generations  # greedy: the same as one process, in order
    assert not list(tmp_path.glob("*.replica*"))  # the shares were merged, then removed


def test_lora_adapter_directory_loads_and_generates(tiny_model: Path, tmp_path: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    config.init_lora_weights = False  # random adapter weights: it really changes the model
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")  # no tokenizer: the base's
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    output_file = tmp_path / "lora.jsonl"
    result = infer(tmp_path / "adapter", output_file, "--generation.temperature", "0.8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LoRA adapter" in result.stdout
    rows = read_jsonl(output_file)
    assert len(rows) == len(read_jsonl(PROMPTS)) and all(row["generation"] for row in rows)


def test_bad_prompts_file_is_a_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    # R-DATA-VALIDATION: the error names the file, the line and the expected schema.
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": 1, "prompt": "fine"}\n{"id": 2, "text": "no prompt field"}\n')
    result = infer(tiny_model, tmp_path / "out.jsonl", "--data.prompts_file", str(prompts))
    assert result.returncode != 0
    assert f"{prompts}, line 2: needs a non-empty `prompt`" in result.stderr
    assert "Expected one JSON object per line" in result.stderr
