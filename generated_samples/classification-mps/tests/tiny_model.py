"""Build a tiny model and tokenizer offline, for the smoke test (no model hub needed).

    python tests/tiny_model.py runs/tiny-model
    python train.py --config configs/smoke.yaml

A byte-level BPE tokenizer of ~300 tokens is trained on the sample data, and a 2-layer
ModernBERT (the architecture of the default model)
is built from a config. Both are saved with `save_pretrained`, so train.py loads them
through the same `from_pretrained` path as a real model.
"""

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForMaskedLM, ModernBertConfig, PreTrainedTokenizerFast

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "train.jsonl"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def build(out_dir: Path, sample: Path = SAMPLE) -> Path:
    """Save a tiny tokenizer and model to `out_dir` and return it."""
    with sample.open() as f:
        texts = [json.loads(line)["text"] for line in f]
    tokenizer = build_tokenizer(texts)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = AutoModelForMaskedLM.from_config(config)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-model")))
