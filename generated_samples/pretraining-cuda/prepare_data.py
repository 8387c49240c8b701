"""Tokenize the corpus once into train.bin / val.bin / meta.json (R-PREPROCESS-ONCE).

    python prepare_data.py --config configs/train.yaml

`data.corpus_path` is a UTF-8 text file (documents separated by blank lines), a JSONL file
(one document per line, in a "text" field), or a directory of such files (*.txt,
*.jsonl, read in name order). The corpus is streamed: documents are read and tokenized a
batch at a time and the tokens appended to disk, so memory stays flat whatever the
corpus size. The token files are flat arrays that train.py reads with `np.memmap`;
meta.json next to them records their dtype and the vocabulary size (R-MEMMAP-DTYPE).

With `data.tokenizer_vocab_size` set (the smoke config, or a machine with no access to
the Hugging Face Hub), a byte-level BPE of that size is first trained on the corpus and
saved at `data.tokenizer`, so nothing is downloaded.
"""

import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from config import load_config, run

EOS = "<|endoftext|>"
SUFFIXES = (".txt", ".jsonl")
BATCH_BYTES = 4 << 20  # text per tokenizer call: large enough to keep its threads busy


def corpus_files(corpus: Path) -> list[Path]:
    """The files that make up the corpus, or a clear error (R-DATA-VALIDATION)."""
    if corpus.is_dir():
        files = sorted(p for p in corpus.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        if not files:
            sys.exit(f"error: {corpus} holds no {' or '.join(SUFFIXES)} files (data.corpus_path)")
        return files
    if not corpus.is_file():
        sys.exit(
            f"error: corpus not found: {corpus} (data.corpus_path: a text file, a JSONL file "
            "with a 'text' field per line, or a directory of them)"
        )
    return [corpus]


def documents(path: Path) -> Iterator[str]:
    """The documents of one file, read line by line: never the whole file at once."""
    with path.open(encoding="utf-8") as lines:
        if path.suffix == ".jsonl":
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield jsonl_text(line, path, number)
            return
        # Plain text: documents are separated by blank lines.
        paragraph: list[str] = []
        for line in lines:
            if line.strip():
                paragraph.append(line)
            elif paragraph:
                yield "".join(paragraph).strip()
                paragraph = []
        if paragraph:
            yield "".join(paragraph).strip()


def jsonl_text(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        sys.exit(f"error: {path}:{number}: not valid JSON ({err.msg})")
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        sys.exit(f'error: {path}:{number}: expected a JSON object with a "text" string')
    return text


def batches(files: list[Path], progress: tqdm) -> Iterator[list[str]]:
    """Documents in batches of about BATCH_BYTES of text, advancing the progress bar."""
    batch: list[str] = []
    size = 0
    for path in files:
        read = 0
        for doc in documents(path):
            batch.append(doc)
            size += len(doc)
            read += len(doc)
            if size >= BATCH_BYTES:
                yield batch
                progress.update(size)
                batch, size = [], 0
        # Separators, whitespace and multi-byte characters: settle the bar to the file's size.
        progress.update(path.stat().st_size - read)
    if batch:
        yield batch
        progress.update(size)


def train_tokenizer(files: list[Path], vocab_size: int, out_dir: str) -> None:
    """Train a byte-level BPE on the corpus (streamed) and save it for from_pretrained."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    docs = (doc for path in files for doc in documents(path))
    tokenizer.train_from_iterator(docs, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS).save_pretrained(out_dir)
    print(f"trained a {tokenizer.get_vocab_size()}-token BPE tokenizer -> {out_dir}")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as err:
        sys.exit(
            f"error: cannot load the tokenizer '{name}' (data.tokenizer): {err}\n"
            "Without access to the Hugging Face Hub, give a local tokenizer directory, or "
            "train one on your corpus with e.g. --data.tokenizer_vocab_size 32768."
        )
    if tokenizer.eos_token_id is None:
        sys.exit(f"error: tokenizer '{name}' has no EOS token to separate documents")
    return tokenizer


def tokenize_to(files: list[Path], tokenizer: PreTrainedTokenizerBase, path: Path, dtype) -> int:
    """Append every document's tokens, each followed by EOS, to `path`; returns the count."""
    total_bytes = sum(f.stat().st_size for f in files)
    count = 0
    with (
        path.open("wb") as out,
        tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizing") as progress,
    ):
        for batch in batches(files, progress):
            # One batched call: the fast tokenizer spreads it over its own threads.
            encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
            for doc in encoded:
                doc.append(tokenizer.eos_token_id)
            n = sum(map(len, encoded))
            ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=n)
            out.write(ids.tobytes())
            count += len(ids)
            progress.set_postfix(tokens=f"{count:,}", refresh=False)
    return count


def split_off_validation(train: Path, val: Path, dtype, n_val: int) -> None:
    """Move the last n_val tokens of `train` into `val`, without reading the rest."""
    itemsize = np.dtype(dtype).itemsize
    keep = train.stat().st_size - n_val * itemsize
    with train.open("r+b") as source, val.open("wb") as target:
        source.seek(keep)
        while chunk := source.read(BATCH_BYTES):
            target.write(chunk)
        source.truncate(keep)


def main() -> None:
    cfg, _ = load_config()
    data = cfg["data"]
    files = corpus_files(Path(data["corpus_path"]))
    if data["tokenizer_vocab_size"]:
        train_tokenizer(files, data["tokenizer_vocab_size"], data["tokenizer"])
    tokenizer = load_tokenizer(data["tokenizer"])

    vocab_size = len(tokenizer)
    dtype = np.uint16 if vocab_size < 2**16 else np.uint32  # R-MEMMAP-DTYPE
    out_dir = Path(data["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = out_dir / "train.bin", out_dir / "val.bin"
    count = tokenize_to(files, tokenizer, train, dtype)
    if count < 2:
        sys.exit(f"error: the corpus {data['corpus']} holds no text to train on")
    n_val = max(int(count * data["val_fraction"]), 1)
    split_off_validation(train, val, dtype, n_val)
    meta = {"dtype": np.dtype(dtype).name, "vocab_size": vocab_size, "tokenizer": data["tokenizer"]}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{count:,} tokens ({count - n_val:,} train, {n_val:,} val) -> {out_dir}")


if __name__ == "__main__":
    run(main)
