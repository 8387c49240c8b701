"""Throughput of a generated pretraining project: its training-loop variants side by side.

    python benchmarks/pretraining_throughput.py CUDA_PROJECT [--ddp MULTI_GPU_PROJECT --gpus 1 2 4]
    python benchmarks/pretraining_throughput.py --tiny      # CPU: checks the plumbing only

CUDA_PROJECT is a rendered cuda pretraining project (any scale: its configs/train.yaml sets
the model, micro-batch and accumulation). The script writes random GPT-2-vocabulary tokens as
the project's token files and trains the project itself (its train.py, its config, a few
overrides) once per variant, in one run on one GPU, then prints one table: tokens/s, TFLOP/s
and MFU (from the project's own log.jsonl, timed between its sync points, the first windows
with compilation left out) and peak GPU memory.

--ddp also runs a rendered multi-gpu project through torchrun on 1, 2, 4 ... GPUs at the same
per-GPU batch and prints the scaling. --baseline adds another project (e.g. one rendered by an
older scaffold) as a row, trained with the same overrides. --set KEY=VALUE overrides the config
for every run (e.g. a smaller preset of a large FSDP project, to run it on one GPU). --tiny
renders the projects itself and runs a 2-layer model on the CPU (the multi-gpu one on 2 gloo
processes): figures from it mean nothing; it proves the script and the projects work together.
"""

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

VOCAB = 50257  # GPT-2's tokenizer
REPO = Path(__file__).resolve().parents[1]

# name -> config overrides; each row is the project's default config plus these.
VARIANTS = {
    "eager (compile off)": {"training.compile": "false"},
    "compiled, unchunked cross-entropy": {"model.loss_chunk_size": 0},
    "compiled, chunked cross-entropy (default)": {},
    "default, half the micro-batch": {"batch_factor": 0.5},
    "default, PyTorch's attention kernel (flash)": {"model.attention_kernel": "null"},
    "default, FP32 residual stream (nanoGPT's)": {"model.fp32_residual": "true"},
    "default, compile max-autotune-no-cudagraphs": {
        "training.compile_mode": "max-autotune-no-cudagraphs"
    },
    "default, compile max-autotune (CUDA graphs)": {"training.compile_mode": "max-autotune"},
    "unchunked, twice the micro-batch": {"model.loss_chunk_size": 0, "batch_factor": 2},
    "unchunked, compile max-autotune-no-cudagraphs": {
        "model.loss_chunk_size": 0,
        "training.compile_mode": "max-autotune-no-cudagraphs",
    },
    "unchunked, compile max-autotune (CUDA graphs)": {
        "model.loss_chunk_size": 0,
        "training.compile_mode": "max-autotune",
    },
    "default, twice the micro-batch": {"batch_factor": 2},
    "default, unfused MLP (PyTorch's GELU kernel)": {"model.fused_mlp": "false"},
    "default, twice the loss chunk (16,384 rows)": {"model.loss_chunk_size": 16384},
    "default, cuDNN attention graphs on (model.cudnn_attention)": {"model.cudnn_attention": "true"},
    "default, cuDNN attention graphs off (PyTorch's SDPA)": {"model.cudnn_attention": "false"},
}
DEFAULT_VARIANTS = list(VARIANTS)[:6]
# --tiny: a 2-layer model, uncompiled (compiling on a CPU takes minutes and proves little here).
TINY = {
    "model.preset": "tiny",
    "model.block_size": 64,
    "training.batch_size": 4,
    "training.compile": "false",
}


def write_tokens(data_dir: Path, n_tokens: int) -> None:
    rng = np.random.default_rng(0)
    for name, size in (("train.bin", n_tokens), ("val.bin", n_tokens // 20)):
        rng.integers(0, VOCAB, size, dtype=np.uint16).tofile(data_dir / name)
    (data_dir / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": VOCAB}))


def render(target: Path, hardware: str) -> Path:
    """A fresh pretraining project from this checkout of scaffold."""
    cmd = [sys.executable, "-m", "scaffold", "new", str(target), "--task", "pretraining"]
    cmd += ["--hardware", hardware, "--yes"]
    if hardware == "multi-gpu":
        cmd += ["--gpus", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return target


def project_config(project: Path) -> dict:
    return yaml.safe_load((project / "configs" / "train.yaml").read_text())


def overrides_for(project: Path, variant: dict, args: argparse.Namespace, out: Path) -> dict:
    cfg = project_config(project)["training"]
    batch, accum = cfg["batch_size"], args.accum or cfg["grad_accum_steps"]
    if args.tiny:
        batch = TINY["training.batch_size"]
    factor = variant.get("batch_factor", 1)  # the same tokens per optimizer step
    batch, accum = max(1, int(batch * factor)), max(1, int(accum / factor))
    overrides = {
        **(TINY if args.tiny else {}),
        "data.out_dir": args.data_dir,
        "data.num_workers": 0 if args.tiny else 4,
        "training.out_dir": out,
        "training.batch_size": batch,
        "training.grad_accum_steps": accum,
        "training.max_steps": args.steps,
        "training.lr_decay_steps": args.steps,
        "training.warmup_steps": 2,
        "logging.interval": args.log_every,
        "eval.interval": 10**6,  # no evaluation or checkpoint inside the timed steps
        "eval.batches": 1,
        "checkpoint.interval": 10**6,
    }
    if args.tiny:
        overrides["training.peak_tflops"] = "null"
    overrides.update(setting.split("=", 1) for setting in args.set)
    overrides.update({k: v for k, v in variant.items() if k != "batch_factor"})
    if args.tiny:
        overrides["training.compile"] = "false"
    return overrides


def timed_windows(log: Path) -> list[dict]:
    """The project's log windows with a throughput figure, after the first two (compilation)."""
    # Complete lines only: the run may be writing the last one.
    lines = log.read_text().split("\n")[:-1] if log.exists() else []
    return [r for r in map(json.loads, lines) if "tokens_per_s" in r][2:]


def process_tree(root: int) -> list[int]:
    """root and its descendants (Linux /proc): torchrun starts its workers in sessions of
    their own, so killing torchrun's process group would leave them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def run_until(cmd: list[str], cwd: Path, log: Path, windows: int | None) -> None:
    """Run cmd to its end, or, with windows, only until the log holds that many timed
    windows: then SIGKILL the whole tree, so that no checkpoint and no model.safetensors are
    written (at gpt-6.7b they are 107 GB) and no SIGTERM handler starts a save."""
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL) as process:  # stderr: log
        while process.poll() is None:
            if windows and len(timed_windows(log)) >= windows:
                for pid in reversed(process_tree(process.pid)):  # workers first
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
                return
            time.sleep(2)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, cmd)


def train(project: Path, overrides: dict, nproc: int | None, windows: int | None) -> dict:
    """Train once; the medians of the project's log windows after the first two."""
    launch = [sys.executable]
    if nproc:
        launch += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    args = [f"--{k}={v}" for k, v in overrides.items()]
    cmd = [*launch, "train.py", "--config", "configs/train.yaml", *args]
    log = Path(overrides["training.out_dir"]) / "log.jsonl"
    run_until(cmd, project, log, windows)
    timed = timed_windows(log)
    if not timed:
        raise SystemExit("too few log windows: raise --steps or lower --log-every")
    keys = ("tokens_per_s", "tflops", "mfu", "memory_gb")
    result = {k: statistics.median(r[k] for r in timed) for k in keys if k in timed[0]}
    if "memory_gb" in result:
        result["memory_gb"] = max(r["memory_gb"] for r in timed)
    result["train_loss"] = timed[-1]["train_loss"]  # the same seed and data: variants compare
    return result


def row(name: str, r: dict, reference: float) -> str:
    mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
    memory = f"{r['memory_gb']:.1f}" if "memory_gb" in r else "-"
    ratio = r["tokens_per_s"] / reference
    return (
        f"| {name} | {r['tokens_per_s']:,.0f} | {r['tflops']:.1f} | {mfu} | {memory} |"
        f" {r['train_loss']:.3f} | {ratio:.2f}x |"
    )


def single_gpu(project: Path, args: argparse.Namespace, tmp: Path) -> None:
    rows = []
    for name in args.variants:
        overrides = overrides_for(project, VARIANTS[name], args, tmp / f"run-{len(rows)}")
        try:
            rows.append((name, train(project, overrides, None, args.windows)))
        except subprocess.CalledProcessError as failed:  # the other variants still run
            print(f"failed: {name}: exit {failed.returncode}", file=sys.stderr, flush=True)
            continue
        # Each row as it comes: a run cut short by a time limit still leaves its figures.
        print(f"measured: {name}: {rows[-1][1]}", file=sys.stderr, flush=True)
    if args.baseline:
        overrides = overrides_for(args.baseline, {}, args, tmp / "run-baseline")
        result = train(args.baseline, overrides, None, args.windows)
        rows.append((f"baseline: {args.baseline.name}", result))
    cfg = {
        **project_config(project)["model"],
        **({"preset": "tiny", "block_size": 64} if args.tiny else {}),
    }
    default = dict(rows).get("compiled, chunked cross-entropy (default)", rows[0][1])
    print(f"\n{cfg['preset']}, block {cfg['block_size']}, {args.steps} steps:")
    print("| variant | tokens/s | TFLOP/s | MFU | peak GiB | last loss | vs default |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(row(name, r, default["tokens_per_s"]))


def scaling(project: Path, args: argparse.Namespace, tmp: Path) -> None:
    rows = []
    for n in args.gpus:
        overrides = overrides_for(project, {}, args, tmp / f"ddp-{n}")
        rows.append((f"{n} GPU{'s' if n > 1 else ''}", train(project, overrides, n, args.windows)))
        print(f"measured: DDP on {n}: {rows[-1][1]}", file=sys.stderr, flush=True)
    print("\nDDP scaling (tokens/s of all GPUs; MFU per GPU):")
    print("| GPUs | tokens/s | TFLOP/s per GPU | MFU | peak GiB | last loss | scaling |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(row(name, r, rows[0][1]["tokens_per_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, nargs="?", help="a rendered cuda project")
    # `--variants` with none: only the --ddp scaling
    parser.add_argument("--variants", nargs="*", choices=VARIANTS, default=DEFAULT_VARIANTS)
    parser.add_argument("--baseline", type=Path, help="another cuda project, as one more row")
    parser.add_argument("--ddp", type=Path, help="a rendered multi-gpu project: DDP scaling")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=5, help="steps per timed window")
    parser.add_argument("--accum", type=int, help="micro-batches per step (default: config's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every run, e.g. model.preset=gpt2-1.5b (repeatable)",
    )
    parser.add_argument(
        "--windows",
        type=int,
        help="stop each run after this many timed windows, before its final checkpoint",
    )
    parser.add_argument("--tiny", action="store_true", help="CPU plumbing check")
    args = parser.parse_args()
    if not args.project and args.variants and not args.tiny:
        parser.error("give a rendered cuda pretraining project, or --tiny")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.tiny:
            args.project = render(tmp / "cuda", "cuda")
            args.ddp, args.gpus = render(tmp / "multi", "multi-gpu"), [1, 2]
            args.steps, args.log_every, args.variants = 8, 2, DEFAULT_VARIANTS[1:]
        args.data_dir = tmp / "data"
        args.data_dir.mkdir()
        write_tokens(args.data_dir, 2_000_000 if args.tiny else 50_000_000)
        if args.variants:
            single_gpu(args.project.resolve(), args, tmp)
        if args.ddp:
            scaling(args.ddp.resolve(), args, tmp)


if __name__ == "__main__":
    main()
