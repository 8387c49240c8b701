"""Tokenize the corpus once into train.bin / val.bin / meta.json (R-PREPROCESS-ONCE).

    python prepare_data.py --config configs/train.yaml

The token files are flat arrays that train.py reads with `np.memmap`; meta.json next to
them records their dtype and the vocabulary size (R-MEMMAP-DTYPE). With
`data.tokenizer_vocab_size` set (the smoke config), a byte-level BPE of that size is first
trained on the corpus and saved at `data.tokenizer`, so nothing is downloaded.
"""

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from config import load_config

EOS = "<|endoftext|>"


def train_tokenizer(corpus: Path, vocab_size: int, out_dir: str) -> None:
    """Train a byte-level BPE on the corpus and save it where from_pretrained finds it."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train([str(corpus)], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS).save_pretrained(out_dir)
    print(f"trained a {tokenizer.get_vocab_size()}-token BPE tokenizer -> {out_dir}")


def main() -> None:
    cfg, _ = load_config()
    data = cfg["data"]
    corpus = Path(data["corpus_file"])
    if not corpus.is_file():  # R-DATA-VALIDATION
        raise SystemExit(f"corpus not found: {corpus} (expected a UTF-8 text file)")
    if data["tokenizer_vocab_size"]:
        train_tokenizer(corpus, data["tokenizer_vocab_size"], data["tokenizer"])

    tokenizer = AutoTokenizer.from_pretrained(data["tokenizer"])
    if tokenizer.eos_token_id is None:
        raise SystemExit(f"tokenizer {data['tokenizer']} has no EOS token to separate documents")
    # Documents are separated by blank lines; each ends with EOS so the model learns
    # where a text stops. The fast tokenizer encodes the whole list in one batched call.
    text = corpus.read_text(encoding="utf-8")
    docs = [doc.strip() for doc in text.split("\n\n") if doc.strip()]
    if not docs:
        raise SystemExit(f"corpus is empty: {corpus}")
    encoded = tokenizer(docs, verbose=False)["input_ids"]
    ids = [i for doc in encoded for i in (*doc, tokenizer.eos_token_id)]

    vocab_size = len(tokenizer)
    dtype = np.uint16 if vocab_size < 2**16 else np.uint32  # R-MEMMAP-DTYPE
    tokens = np.array(ids, dtype=dtype)
    n_val = max(int(len(tokens) * data["val_fraction"]), 1)
    out_dir = Path(data["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens[:-n_val].tofile(out_dir / "train.bin")
    tokens[-n_val:].tofile(out_dir / "val.bin")
    meta = {"dtype": np.dtype(dtype).name, "vocab_size": vocab_size, "tokenizer": data["tokenizer"]}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(tokens):,} tokens ({len(tokens) - n_val:,} train, {n_val:,} val) -> {out_dir}")


if __name__ == "__main__":
    main()
