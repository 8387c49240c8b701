"""Batched generation: a JSONL file of prompts in, a JSONL file of generations out.

    python infer.py --config configs/train.yaml [--section.key value ...]

Each input line is {"id": ..., "prompt": "..."} or {"id": ..., "messages": [...]}; each output
line is the input row plus "generation", in input order. `model.name` may be a hub id, a
fine-tuned model directory, or a LoRA adapter directory (it holds adapter_config.json).
Engine: transformers `generate`, batched with left padding.
"""

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peft import PeftModel
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from config import load_config, run

SCHEMA = (
    'one JSON object per line: {"id": <optional>, "prompt": "<text>"} or '
    '{"id": <optional>, "messages": [{"role": "user", "content": "<text>"}, ...]}'
)


def progress_bar(**options) -> tqdm:
    """A tqdm bar, with rate and ETA. Off a terminal (CI, SLURM logs) it is redrawn at most
    once a minute, not ten times a second."""
    return tqdm(mininterval=0.1 if sys.stderr.isatty() else 60, **options)


def read_prompts(path: str) -> list[dict]:
    """Read and check the prompts file (R-DATA-VALIDATION); a missing id becomes the line number."""
    if not Path(path).is_file():
        raise SystemExit(f"prompts file not found: {path}\nExpected {SCHEMA}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SystemExit(
                    f"{path}, line {line_no}: invalid JSON ({err})\nExpected {SCHEMA}"
                ) from None
            if not isinstance(row, dict) or not _valid(row):
                raise SystemExit(
                    f"{path}, line {line_no}: needs a non-empty `prompt` string or a `messages` "
                    f"list of objects with a role and a content\nExpected {SCHEMA}"
                )
            rows.append({"id": line_no, **row})
    if not rows:
        raise SystemExit(f"{path}: no prompts\nExpected {SCHEMA}")
    return rows


def _valid(row: dict) -> bool:
    if "messages" in row:
        messages = row["messages"]
        return isinstance(messages, list) and bool(messages) and all(map(_is_message, messages))
    prompt = row.get("prompt")
    return isinstance(prompt, str) and bool(prompt.strip())


def _is_message(message) -> bool:
    return isinstance(message, dict) and all(
        isinstance(message.get(key), str) for key in ("role", "content")
    )


def resolve_model(model_cfg: dict) -> tuple[str, str | None, str]:
    """(base model, LoRA adapter directory or None, tokenizer source) for `model.name`."""
    name = model_cfg["name"]
    adapter_config = Path(name) / "adapter_config.json"
    if not adapter_config.is_file():
        return name, None, name
    recorded = json.loads(adapter_config.read_text())["base_model_name_or_path"]
    base = model_cfg["base_model"] or recorded
    # Fine-tuning runs save the tokenizer next to the adapter; a bare adapter uses the base's.
    has_tokenizer = (Path(name) / "tokenizer_config.json").is_file()
    return base, name, name if has_tokenizer else base


def load_tokenizer(source: str, model_cfg: dict):
    tokenizer = AutoTokenizer.from_pretrained(
        source, trust_remote_code=model_cfg["trust_remote_code"]  # R-SAFE-LOAD
    )
    if tokenizer.pad_token is None:  # R-PAD-TOKEN: decoder models often ship without one
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # R-PAD-TOKEN: generation continues from the right end
    return tokenizer


def encode(rows: list[dict], tokenizer, use_chat_template: bool) -> list[list[int]]:
    """Token ids per row: chat rows (and prompts, for instruct models) through the chat template."""
    if tokenizer.chat_template is None and (
        use_chat_template or any("messages" in row for row in rows)
    ):
        raise SystemExit(
            "the tokenizer has no chat template: give plain `prompt` rows and set "
            "--model.chat_template false, or use an instruct/chat model"
        )
    encoded = []
    for row in rows:
        if "messages" in row or use_chat_template:
            messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            # The template already holds any special tokens the model expects.
            encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            encoded.append(tokenizer(row["prompt"])["input_ids"])
    return encoded


def transformers_engine(cfg: dict, base: str, adapter: str | None, tokenizer, device: torch.device):
    """A batched `generate` function over token ids (the engine)."""
    model_cfg, gen = cfg["model"], cfg["generation"]
    model = AutoModelForCausalLM.from_pretrained(
        base,
        dtype=model_cfg["dtype"],
        trust_remote_code=model_cfg["trust_remote_code"],  # R-SAFE-LOAD
    )
    if adapter is not None:
        # Fold the LoRA weights into the base: plain matmuls from here on.
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.to(device)
    model.eval()
    sampling = (
        {"do_sample": True, "temperature": gen["temperature"], "top_p": gen["top_p"]}
        if gen["temperature"] > 0
        else {"do_sample": False}
    )

    def generate(batch_ids: list[list[int]]) -> list[str]:
        batch = tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt").to(model.device)
        with torch.inference_mode():  # R-NO-GRAD-EVAL
            output = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],  # R-PAD-TOKEN: padding is not attended
                max_new_tokens=gen["max_new_tokens"],
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    return generate


def build_engine(
    cfg: dict,
    base: str,
    adapter: str | None,
    tokenizer,
) -> tuple[Callable[[list[list[int]]], list[str]], int]:
    """The generate function, and how many prompts to give it per call."""
    device = torch.device("cpu")  # R-DEVICE
    print(f"engine: transformers generate, device: {device}")
    generate = transformers_engine(cfg, base, adapter, tokenizer, device)
    return generate, cfg["generation"]["batch_size"]


def write_generations(
    rows: list[dict], prompt_ids: list, generate: Callable, batch_size: int, output_file: Path
) -> None:
    """Generate batch by batch, writing each input row plus its generation in input order."""
    output_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (
        output_file.open("w", encoding="utf-8") as out,
        progress_bar(desc="generating", total=len(rows), unit="prompt", dynamic_ncols=True) as bar,
    ):
        for first in range(0, len(rows), batch_size):
            batch = rows[first : first + batch_size]
            texts = generate(prompt_ids[first : first + batch_size])
            for row, text in zip(batch, texts, strict=True):
                out.write(json.dumps({**row, "generation": text}, ensure_ascii=False) + "\n")
            out.flush()  # finished batches survive an interrupted run
            bar.update(len(batch))
    seconds = time.perf_counter() - start  # the whole run's rate, for logs and benchmarks
    print(f"{len(rows)} prompts in {seconds:.0f}s ({len(rows) / seconds:.2f} prompts/s)")


def main() -> None:
    cfg, _ = load_config()
    model_cfg, data_cfg, gen = cfg["model"], cfg["data"], cfg["generation"]
    rows = read_prompts(data_cfg["prompts_file"])
    set_seed(gen["seed"])  # R-SEED: sampling is reproducible

    base, adapter, tokenizer_source = resolve_model(model_cfg)
    tokenizer = load_tokenizer(tokenizer_source, model_cfg)
    prompt_ids = encode(rows, tokenizer, model_cfg["chat_template"])
    print(f"{len(rows)} prompts from {data_cfg['prompts_file']}; model {base}", end="")
    print(f" + LoRA adapter {adapter}" if adapter else "")
    output_file = Path(data_cfg["output_file"])  # R-OUTPUT-NAME
    generate, batch_size = build_engine(cfg, base, adapter, tokenizer)
    write_generations(rows, prompt_ids, generate, batch_size, output_file)
    print(f"wrote {output_file}")


if __name__ == "__main__":
    run(main)
