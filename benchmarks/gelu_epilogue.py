"""A project's fused MLP (GELU in cuBLASLt's matmul epilogues) against the compiled one.

The pretraining projects' MLP is fc -> GELU -> proj. Compiled, both matmuls are cuBLAS calls
and GELU is an inductor kernel between them: one more pass over the (tokens, 4 x width)
activations forward, and one backward for GELU's derivative. cuBLASLt can apply GELU as the
first matmul writes (epilogue GELU_AUX, which also writes the pre-activation for backward)
and GELU's derivative as the second matmul's input gradient is written (epilogue DGELU).
nvmath-python (NVIDIA's) exposes those epilogues; a cuda pretraining project's fused_mlp.py
uses them (`model.fused_mlp`).

This times one MLP forward and backward (gradients for the input and both weights), bf16,
each way, checks that the fused version's output and gradients agree with PyTorch's tanh
GELU, and prints the time per MLP (wall and GPU kernel time) and the GPU time per optimizer
step (all layers, all micro-batches).

    scaffold new bench --task pretraining --hardware cuda --yes
    pip install -r bench/requirements.txt      # nvmath-python, on a CUDA machine
    python benchmarks/gelu_epilogue.py bench     # gpt2-124m: --width 768 --tokens 32768 --layers 12
"""

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile


def compiled_mlp(approximate: str):
    def mlp(x, w_fc, w_proj):
        return F.linear(F.gelu(F.linear(x, w_fc), approximate=approximate), w_proj)

    return torch.compile(mlp)


def project_mlp(project: Path):
    """The project's fused MLP (fused_mlp.py), compiled as train.py compiles the model."""
    sys.path.insert(0, str(project))
    from fused_mlp import gelu_mlp

    return torch.compile(gelu_mlp)


def time_ms(fn, args, grad, iters: int) -> tuple[float, float]:
    """Wall time per call (CUDA events), and the GPU's kernel time per call (the profiler).
    In a training step the GPU always has queued work, so kernel time is what a call costs
    there; alone, a call can also wait on the host (nvmath plans its matmuls in Python)."""
    for _ in range(3):  # compile, plan, warm up
        fn(*args).backward(grad)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn(*args).backward(grad)
    end.record()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn(*args).backward(grad)
        torch.cuda.synchronize()
    kernel_us = sum(event.self_device_time_total for event in prof.key_averages())
    return start.elapsed_time(end) / iters, kernel_us / 1000 / iters


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a rendered cuda pretraining project")
    parser.add_argument("--width", type=int, default=768, help="model width C (gpt2-124m: 768)")
    parser.add_argument("--tokens", type=int, default=32 * 1024, help="tokens per micro-batch")
    parser.add_argument("--layers", type=int, default=12, help="MLPs per forward")
    parser.add_argument("--micro-batches", type=int, default=16, help="per optimizer step")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()

    torch.manual_seed(0)
    c, m, dtype = args.width, args.tokens, torch.bfloat16
    x = torch.randn(m, c, device="cuda", dtype=dtype, requires_grad=True)
    w_fc = (torch.randn(4 * c, c, device="cuda") * 0.02).to(dtype).requires_grad_()
    w_proj = (torch.randn(c, 4 * c, device="cuda") * 0.02 / math.sqrt(2)).to(dtype).requires_grad_()
    grad = torch.randn(m, c, device="cuda", dtype=dtype)
    inputs = (x, w_fc, w_proj)

    variants = {
        "compiled, exact GELU (the projects before)": compiled_mlp("none"),
        "compiled, tanh GELU (model.fused_mlp: false)": compiled_mlp("tanh"),
        "fused_mlp.py, compiled: GELU_AUX / DGELU (default)": project_mlp(args.project),
    }

    # Each variant against PyTorch's tanh GELU, in FP32 from the same bf16 inputs.
    reference = [t.detach().float().requires_grad_() for t in inputs]
    hidden = F.gelu(F.linear(reference[0], reference[1]), approximate="tanh")
    out_ref = F.linear(hidden, reference[2])
    out_ref.backward(grad.float())
    for name, fn in variants.items():
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        out.backward(grad)
        errors = [relative_error(out, out_ref)] + [
            relative_error(t.grad, r.grad) for t, r in zip(inputs, reference, strict=True)
        ]
        print(
            f"{name}: relative error of output, grad x, grad w_fc, grad w_proj against FP32 "
            f"tanh GELU: " + ", ".join(f"{e:.2e}" for e in errors)
        )

    per_step = args.layers * args.micro_batches
    print(
        f"\nMLP forward + backward, ({m}, {c}) -> ({m}, {4 * c}) -> ({m}, {c}), bf16, "
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    )
    print(
        f"| variant | ms per MLP, wall | GPU kernel ms per MLP | GPU ms per step "
        f"({args.layers} layers x {args.micro_batches} micro-batches) | vs the first |"
    )
    print("|---|---:|---:|---:|---:|")
    baseline = None
    for name, fn in variants.items():
        wall, kernels = time_ms(fn, inputs, grad, args.iters)
        baseline = baseline or kernels
        print(
            f"| {name} | {wall:.3f} | {kernels:.3f} | {kernels * per_step:.1f} "
            f"| {baseline / kernels:.3f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
