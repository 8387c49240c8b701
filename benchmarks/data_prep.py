"""Peak memory and throughput of a pretraining project's `prepare_data.py`.

    python benchmarks/data_prep.py [--sizes 300M 3G] [--workdir DIR]

Renders a cpu pretraining project, writes synthetic corpora of the given sizes (plain
text, documents of 20-2,000 words separated by blank lines, Zipf-distributed words),
trains one 32,768-token BPE tokenizer on a 20 MB sample, then, side by side in one run:

- the tokenizer's own batched encode speed on 64 MB of the corpus held in memory (the
  ceiling: no reading, no writing), and
- `prepare_data.py` on each corpus, as a user runs it (streamed read, batched encode,
  token file appended on disk), with its wall time and peak resident memory.

Prints one table; the goal is a peak RSS under 1.5 GB at every size and a throughput
within 1.5x of the tokenizer's own.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scaffold.answers import collect
from scaffold.render import render_project

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
SAMPLE_BYTES = 20 << 20
CEILING_BYTES = 64 << 20
VOCAB = 32768


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG])", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"size like 300M or 3G, not {text!r}")
    return int(match[1]) * UNITS[match[2]]


def write_corpus(path: Path, size: int, seed: int = 0) -> None:
    """Synthetic English-like text: Zipf-distributed words from a fixed 50,000-word list."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1 / np.arange(1, 27)
    words = np.array(
        [
            "".join(rng.choice(letters, size=rng.integers(2, 10), p=weights / weights.sum()))
            for _ in range(50_000)
        ]
    )
    ranks = np.arange(1, len(words) + 1)
    p = (1 / ranks) / (1 / ranks).sum()
    written = 0
    with path.open("w") as out:
        while written < size:
            lengths = rng.integers(20, 2000, size=64)
            picks = rng.choice(len(words), size=int(lengths.sum()), p=p)
            docs = np.split(words[picks], np.cumsum(lengths)[:-1])
            text = "\n\n".join(" ".join(doc) + "." for doc in docs) + "\n\n"
            out.write(text)
            written += len(text)


def measured(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one command, from a fresh parent process."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        f"r = subprocess.run({command!r}, cwd={str(cwd)!r}); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(r.returncode)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    seconds, max_rss_kb = result.stdout.split()[-2:]
    return float(seconds), int(max_rss_kb) / 1e6


def tokenizer_ceiling(tokenizer_dir: Path, corpus: Path) -> float:
    """MB/s of the tokenizer's own batched encode on text already in memory."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with corpus.open() as f:
        docs = [d for d in f.read(CEILING_BYTES).split("\n\n") if d.strip()]
    batches, batch, size = [], [], 0
    for doc in docs:
        batch.append(doc)
        size += len(doc)
        if size >= 4 << 20:
            batches.append(batch)
            batch, size = [], 0
    start = time.perf_counter()
    for b in batches:
        tokenizer(b, add_special_tokens=False, verbose=False)
    return sum(map(len, docs)) / (time.perf_counter() - start) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[300 << 20, 3 << 30])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="data-prep-"))
    work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    if not project.exists():
        answers = collect({"project_name": "bench", "task": "pretraining", "hardware": "cpu"})
        render_project(answers, project)

    sample = work / "sample.txt"
    write_corpus(sample, SAMPLE_BYTES, seed=1)
    tokenizer = work / "tokenizer"
    prepare = [sys.executable, "prepare_data.py", "--config", "configs/train.yaml"]
    print(f"training a {VOCAB}-token BPE on a {SAMPLE_BYTES >> 20} MB sample ...", flush=True)
    subprocess.run(
        [
            *prepare,
            f"--data.corpus_path={sample}",
            f"--data.tokenizer={tokenizer}",
            f"--data.tokenizer_vocab_size={VOCAB}",
            f"--data.out_dir={work / 'sample-tokens'}",
        ],
        cwd=project,
        check=True,
        capture_output=True,
    )
    ceiling = tokenizer_ceiling(tokenizer, sample)

    rows = []
    for size in args.sizes:
        corpus = work / f"corpus-{size >> 20}M.txt"
        if not corpus.exists() or corpus.stat().st_size < size:
            print(f"writing a {size >> 20} MB corpus ...", flush=True)
            write_corpus(corpus, size)
        print(f"prepare_data.py on {size >> 20} MB ...", flush=True)
        seconds, rss = measured(
            [
                *prepare,
                f"--data.corpus_path={corpus}",
                f"--data.tokenizer={tokenizer}",
                f"--data.out_dir={work / 'tokens'}",
            ],
            project,
        )
        rate = corpus.stat().st_size / seconds / 1e6
        rows.append((corpus.stat().st_size / 1e6, seconds, rate, rss, ceiling / rate))

    print(f"\ntokenizer's own batched encode, in memory: {ceiling:.1f} MB/s")
    print("| corpus (MB) | wall (s) | MB/s | peak RSS (GB) | tokenizer alone / prepare_data |")
    print("|---:|---:|---:|---:|---:|")
    for mb, seconds, rate, rss, ratio in rows:
        print(f"| {mb:,.0f} | {seconds:,.1f} | {rate:.1f} | {rss:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
