"""Forward + backward time of causal attention per SDPA kernel, at a pretraining project's shape.

    python benchmarks/sdpa_kernels.py [--batch 32 --heads 12 --seq 1024 --head-dim 64]

PyTorch picks flash, then memory-efficient, then math, then cuDNN: on a Hopper GPU cuDNN's
kernel is never chosen unless asked for (`model.attention_kernel` in a pretraining project).
This prints each kernel's time and attention TFLOP/s (causal: half of 4·B·H·T²·D forward,
3.5x that with backward), side by side in one run. Needs a CUDA GPU.
"""

import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KERNELS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def time_kernel(kernel: SDPBackend, q, k, v, repeats: int) -> float:
    """Median milliseconds of one forward + backward."""
    times = []
    for _ in range(repeats + 3):  # the first three warm up
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with sdpa_kernel(kernel):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(torch.ones_like(out))
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times[3:])[repeats // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    shape = (args.batch, args.heads, args.seq, args.head_dim)
    q, k, v = (
        torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        for _ in range(3)
    )
    flops = 3.5 * 4 * args.batch * args.heads * args.seq**2 * args.head_dim / 2
    gpu = torch.cuda.get_device_name()
    print(f"causal attention {shape}, bf16, {gpu}, torch {torch.__version__}")
    print("| kernel | ms (fwd + bwd) | TFLOP/s |")
    print("|---|---:|---:|")
    for name, kernel in KERNELS.items():
        try:
            ms = time_kernel(kernel, q, k, v, args.repeats)
        except RuntimeError as err:  # a kernel the GPU or the shape does not support
            print(f"| {name} | not available: {str(err).splitlines()[0][:80]} | - |")
            continue
        print(f"| {name} | {ms:.3f} | {flops / ms / 1e9:.0f} |")


if __name__ == "__main__":
    main()
