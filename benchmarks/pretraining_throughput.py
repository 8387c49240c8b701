"""Throughput of a generated pretraining project on a GPU: torch.compile off vs on.

    python benchmarks/pretraining_throughput.py PROJECT_DIR [--steps 30] [--nproc 1]

PROJECT_DIR is a rendered cuda (or multi-gpu, with --nproc N) pretraining project. The
script writes random GPT-2-vocabulary tokens as the project's token files, then trains
the real `configs/train.yaml` model (gpt2-124m at small scale) for a few steps with each
setting, side by side in one run, and prints tokens/s, TFLOP/s and MFU from the
project's own log.jsonl (the first steps, which include compilation, are left out).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

VOCAB = 50257  # GPT-2's tokenizer


def write_tokens(data_dir: Path, n_tokens: int) -> None:
    rng = np.random.default_rng(0)
    for name, size in (("train.bin", n_tokens), ("val.bin", n_tokens // 20)):
        rng.integers(0, VOCAB, size, dtype=np.uint16).tofile(data_dir / name)
    (data_dir / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": VOCAB}))


def run(project: Path, data_dir: Path, out_dir: Path, steps: int, nproc: int, compile_: bool):
    launch = [sys.executable]
    if nproc > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    overrides = {
        "data.out_dir": data_dir,
        "training.out_dir": out_dir,
        "training.max_steps": steps,
        "training.lr_decay_steps": steps,
        "training.warmup_steps": 2,
        "training.grad_accum_steps": 4,
        "training.compile": str(compile_).lower(),
        "logging.interval": 1,
        "eval.interval": 10_000,
        "eval.batches": 2,
        "checkpoint.interval": 10_000,
    }
    args = [f"--{k}={v}" for k, v in overrides.items()]
    subprocess.run(
        [*launch, "train.py", "--config", "configs/train.yaml", *args], cwd=project, check=True
    )
    rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "tokens_per_s" in r][5:]  # skip warm-up and compilation
    return {k: statistics.median(r[k] for r in timed) for k in ("tokens_per_s", "tflops", "mfu")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--nproc", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        write_tokens(data_dir, 20_000_000)
        results = {
            compile_: run(
                args.project.resolve(), data_dir, Path(tmp) / f"run-{compile_}", args.steps,
                args.nproc, compile_,
            )  # fmt: skip
            for compile_ in (False, True)
        }
    for compile_, r in results.items():
        print(
            f"compile={compile_!s:5}  {r['tokens_per_s']:>12,.0f} tokens/s  "
            f"{r['tflops']:6.1f} TFLOP/s per GPU  MFU {r['mfu']:.1%}"
        )
    ratio = results[True]["tokens_per_s"] / results[False]["tokens_per_s"]
    print(f"torch.compile speed-up: {ratio:.2f}x")


if __name__ == "__main__":
    main()
