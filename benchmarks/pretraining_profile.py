"""Where a pretraining step's GPU time goes: kernel time by kind, and the bare loop's speed.

    python benchmarks/pretraining_profile.py ptc               # a rendered cuda project
    python benchmarks/pretraining_profile.py ptc --unchunked   # model.loss_chunk_size 0
    python benchmarks/pretraining_profile.py ptc --bf16-weights   # the ceiling of bf16 activations
    python benchmarks/pretraining_profile.py ptc --cudagraphs     # compile mode reduce-overhead
    python benchmarks/pretraining_profile.py ptc --preset gpt-6.7b --layers 4 --batch 4 \
        --block 2048 --accum 2 --checkpointing off   # a large model's layers, on one GPU
    torchrun --nproc_per_node 1 benchmarks/pretraining_profile.py ptm --ddp [--bucket-mb 100]

Builds the project's own model (its `model.py` and `configs/train.yaml`: preset, block size,
micro-batch, accumulation, loss chunking, attention kernel) on random tokens, compiles it with
its loss as `train.py` does, and runs whole optimizer steps (bf16 autocast, fused AdamW,
gradient clipping) with no data loading, evaluation or logging. It prints the bare loop's
tokens/s and MFU, for comparison with `pretraining_throughput.py` on the project itself, then
profiles one step: wall time, GPU busy time, kernel time by kind (matmuls, attention,
inductor's fused kernels, optimizer, other), the kernels that took the most, and the longest
stretches the GPU sat idle, with the kernels on either side.

`--preset`, `--layers`, `--batch`, `--block`, `--accum` and `--checkpointing` override the
config: a few layers of a large preset measure its per-layer speed and activation memory on
one GPU. `--ddp` (under torchrun) wraps the model in DDP before compiling it, as a multi-gpu
project's `train.py` does, with `no_sync` on every micro-batch but the last; `--bucket-mb`
sets DDP's bucket size and `--no-optimize-ddp` turns off dynamo's graph split at bucket
boundaries.
"""

import argparse
import dataclasses
import os
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# Kernel-name fragments by kind, tried in this order: cuDNN's attention kernels carry "sm90"
# and "wgmma" in their names too, so attention is matched before matmuls.
KINDS = {
    "attention": ("sdpa", "fmha", "flash", "attention", "cudnn"),
    "matmul": ("gemm", "nvjet", "xmma", "cutlass", "cublas", "sm90"),
    "optimizer": ("multi_tensor", "adam", "foreach"),
    "inductor": ("triton",),
}


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    return next((k for k, parts in KINDS.items() if any(p in name for p in parts)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a rendered cuda pretraining project")
    parser.add_argument("--unchunked", action="store_true", help="model.loss_chunk_size: 0")
    parser.add_argument("--steps", type=int, default=6, help="timed steps after 3 of warm-up")
    parser.add_argument(
        "--coordinate-descent",
        action="store_true",
        help="inductor's coordinate_descent_tuning (slower to compile)",
    )
    parser.add_argument("--chunk", type=int, help="model.loss_chunk_size instead of the config's")
    parser.add_argument(
        "--mode", default="default", help="torch.compile mode, e.g. max-autotune-no-cudagraphs"
    )
    parser.add_argument(
        "--bf16-weights",
        action="store_true",
        help="the model cast to bf16: a ceiling for bf16 activations, not a training setup",
    )
    parser.add_argument(
        "--cudagraphs",
        action="store_true",
        help="compile mode reduce-overhead; gradients kept allocated and added into",
    )
    parser.add_argument("--ddp", action="store_true", help="DDP, as a multi-gpu project (torchrun)")
    parser.add_argument("--bucket-mb", type=float, default=25.0, help="DDP's bucket_cap_mb")
    parser.add_argument(
        "--no-optimize-ddp",
        action="store_true",
        help="one compiled graph; DDP all-reduces after the whole backward",
    )
    parser.add_argument("--preset", help="model.preset instead of the config's")
    parser.add_argument("--layers", type=int, help="the preset's layer count instead")
    parser.add_argument("--batch", type=int, help="training.batch_size instead")
    parser.add_argument("--block", type=int, help="model.block_size instead")
    parser.add_argument("--accum", type=int, help="training.grad_accum_steps instead")
    parser.add_argument(
        "--checkpointing", choices=("on", "off"), help="model.gradient_checkpointing instead"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no GPU: this script profiles CUDA kernels")
    cfg = yaml.safe_load((args.project / "configs" / "train.yaml").read_text())
    sys.path.insert(0, str(args.project))
    from model import GPT, GPTConfig  # the project's own model

    if args.coordinate_descent:
        import torch._inductor.config as inductor

        inductor.coordinate_descent_tuning = True
    if args.no_optimize_ddp:
        torch._dynamo.config.optimize_ddp = False
    if args.ddp:
        dist.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(0)
    m, t = cfg["model"], cfg["training"]
    batch = args.batch or t["batch_size"]
    accum = args.accum or t["grad_accum_steps"]
    block = args.block or m["block_size"]
    checkpointing = {"on": True, "off": False}.get(args.checkpointing, m["gradient_checkpointing"])
    config = GPTConfig.from_preset(
        args.preset or m["preset"],
        vocab_size=50304,  # GPT-2's vocabulary, padded to a multiple of 64
        block_size=block,
        loss_chunk_size=0 if args.unchunked else args.chunk or m["loss_chunk_size"],
        gradient_checkpointing=checkpointing,
        **{k: m[k] for k in ("attention_kernel", "fp32_residual", "fused_mlp") if k in m},
    )
    if args.layers:
        config = dataclasses.replace(config, n_layer=args.layers)
    print(
        f"{config.n_layer} layers of width {config.n_embd}, {batch} x {block} tokens "
        f"x {accum} micro-batches, gradient checkpointing {config.gradient_checkpointing}"
    )
    model = GPT(config).cuda()
    if args.bf16_weights:
        model.bfloat16()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t["weight_decay"]}, {"params": rest}]
    optimizer = torch.optim.AdamW(groups, lr=t["lr"], weight_decay=0.0, fused=True)
    wrapped = model
    if args.ddp:
        device = torch.cuda.current_device()
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device], bucket_cap_mb=args.bucket_mb
        )
    compiled = torch.compile(wrapped, mode="reduce-overhead" if args.cudagraphs else args.mode)
    tokens = torch.randint(0, 50257, (batch, block + 1), device="cuda")
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step() -> None:
        for micro in range(accum):
            if args.cudagraphs:
                # Each replay overwrites the last one's outputs: nothing may hold on to them.
                torch.compiler.cudagraph_mark_step_begin()
            defer_all_reduce = args.ddp and micro < accum - 1
            with wrapped.no_sync() if defer_all_reduce else nullcontext():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = compiled(x, y)
                (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        optimizer.step()
        # With CUDA graphs, a gradient set to None would be the graph's own output buffer on
        # the next micro-batch, which the replay after it overwrites.
        optimizer.zero_grad(set_to_none=not args.cudagraphs)

    started = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    print(f"warm-up, compilation included: {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    rate = args.steps * batch * block * accum / (time.perf_counter() - started)
    tflops = model.flops_per_token() * rate / 1e12
    print(f"bare loop: {rate:,.0f} tokens/s, {tflops:.1f} TFLOP/s, "
          f"MFU {100 * tflops / t['peak_tflops']:.1f}%, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, weights and AdamW "
          f"state {torch.cuda.memory_allocated() / 2**30:.2f} GiB")  # fmt: skip

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - started
    by_kind, by_kernel = defaultdict(float), defaultdict(float)
    for event in prof.key_averages():
        if event.device_type != DeviceType.CUDA or event.is_user_annotation:
            continue
        seconds = event.self_device_time_total / 1e6
        by_kind[kind_of(event.key)] += seconds
        by_kernel[(kind_of(event.key), event.key[:90])] += seconds
    busy = sum(by_kind.values())
    print(f"one profiled step: {wall:.3f} s wall, GPU busy {busy:.3f} s ({100 * busy / wall:.0f}%)")
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:10} {seconds:.3f} s  {100 * seconds / busy:5.1f}%")
    print("kernels that took the most GPU time:")
    for (kind, name), seconds in sorted(by_kernel.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {1e3 * seconds:8.1f} ms  {kind:10} {name}")
    print_idle(prof)
    if args.ddp:
        dist.destroy_process_group()


def print_idle(prof: profile, shown: int = 8) -> None:
    """The GPU's idle stretches within the step: their total and the longest, with the
    kernels that ended before and started after each."""
    kernels = sorted(
        (e.time_range.start, e.time_range.end, e.name)
        for e in prof.events()
        if e.device_type == DeviceType.CUDA and not e.is_user_annotation
    )
    gaps, busy_until, last = [], kernels[0][1], kernels[0][2]
    for start, end, name in kernels[1:]:
        if start > busy_until:
            gaps.append((start - busy_until, last, name))
        if end > busy_until:
            busy_until, last = end, name
    idle = sum(gap for gap, _, _ in gaps) / 1e3
    print(f"GPU idle between kernels: {idle:.1f} ms in {len(gaps)} gaps")
    for gap, before, after in sorted(gaps, reverse=True)[:shown]:
        print(f"  {gap / 1e3:7.2f} ms  after {before[:60]}  before {after[:60]}")


if __name__ == "__main__":
    main()
