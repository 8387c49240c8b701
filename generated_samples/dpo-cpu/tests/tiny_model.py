"""Build a tiny chat model and tokenizer offline, for the smoke test (no model hub needed).

    python tests/tiny_model.py runs/tiny-model
    python train.py --config configs/smoke.yaml

A byte-level BPE tokenizer of ~300 tokens is trained on the sample data and given the chat
template of Qwen2.5-Instruct (the default model's, as shipped with TRL) and its special
tokens, but no pad token, so train.py's pad-token fix runs. A 2-layer Qwen2 model is built
from a config. Both are saved with `save_pretrained`, so train.py loads them through the
same `from_pretrained` path as a real model.
"""

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config
from trl.chat_template_utils import qwen2_5_chat_template

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "train.jsonl"
# Qwen2.5-Instruct's special tokens: end of text, and the start/end of a chat turn (its eos).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def sample_texts(sample: Path) -> list[str]:
    """Every message of the sample data, for the tokenizer to learn its merges from."""
    texts = []
    with sample.open() as f:
        for line in f:
            for value in json.loads(line).values():
                messages = value if isinstance(value, list) else [{"content": value}]
                texts += [message["content"] for message in messages]
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
        eos_token="<|im_end|>",
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
        chat_template=qwen2_5_chat_template,
        model_input_names=["input_ids", "attention_mask"],
    )


def build(out_dir: Path, sample: Path = SAMPLE) -> Path:
    """Save a tiny tokenizer and model to `out_dir` and return it."""
    tokenizer = build_tokenizer(sample_texts(sample))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-model")))
