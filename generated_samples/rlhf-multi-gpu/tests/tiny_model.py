"""Build a tiny chat model and tokenizer offline, for the smoke test (no model hub needed).

    python tests/tiny_model.py runs/tiny-model
    python train.py --config configs/smoke.yaml

A byte-level BPE tokenizer of ~300 tokens is trained on the sample data, with Qwen2.5's
chat tokens and chat template (the one TRL ships) and no pad token, so the pad-token path
runs; the model is a 2-layer Qwen2 (the architecture of the default model) built from a
config. Both are saved with `save_pretrained`, so train.py loads them through the same
`from_pretrained` path as a real model, for the policy and for the reward model alike.
"""

import json
import sys
from importlib.resources import files
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

DATA = Path(__file__).resolve().parents[1] / "data"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = files("trl") / "chat_templates" / "qwen2_5.jinja"


def sample_texts(data_dir: Path) -> list[str]:
    texts = []
    for name in ("preferences.jsonl", "prompts.jsonl"):
        with (data_dir / name).open() as f:
            texts += [value for line in f for value in json.loads(line).values()]
    return texts


def build_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",  # ends an assistant turn, as in Qwen2.5-Instruct
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        chat_template=CHAT_TEMPLATE.read_text(),
        model_input_names=["input_ids", "attention_mask"],
    )


def build(out_dir: Path, data_dir: Path = DATA) -> Path:
    """Save a tiny tokenizer and causal LM to `out_dir` and return it."""
    tokenizer = build_tokenizer(sample_texts(data_dir))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-model")))
