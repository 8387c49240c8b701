"""Causal attention's gradients written where the fused q/k/v projection needs them.

A GPT block computes q, k and v with one matmul, as (B, T, 3C), and splits them into heads.
PyTorch's cuDNN attention returns their gradients as three separate tensors, so backward
concatenates them into the (B, T, 3C) gradient of that matmul: a copy of 3 x B x T x C
values per layer and micro-batch (19 ms of an H100 step at gpt2-124m, benchmarks/README.md).
cuDNN's graph API (nvidia-cudnn-frontend) lets the caller give the gradients' strides, so
its backward kernel can write them straight into one (B, T, 3C) tensor: a cuda pretraining
project's cudnn_attention.py does (`model.cudnn_attention`).

This script times both at one shape, forward and backward in bf16, and checks that they
agree: PyTorch's `scaled_dot_product_attention` with the cuDNN kernel plus the
concatenation autograd does (`model.cudnn_attention: false`), against the project's
`causal_attention`. It needs a GPU and nvidia-cudnn-frontend.

    scaffold new bench --task pretraining --hardware cuda --yes
    python benchmarks/attention_grad_layout.py bench --batch 64 --heads 12 --seq 1024
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def pytorch_step(qkv: torch.Tensor, grad_y: torch.Tensor, heads: int):
    """PyTorch's cuDNN SDPA; autograd concatenates q, k and v's gradients into qkv.grad."""
    qkv = qkv.detach().requires_grad_()
    B, T, three_c = qkv.shape
    q, k, v = (t.view(B, T, heads, -1).transpose(1, 2) for t in qkv.chunk(3, dim=2))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y.transpose(1, 2).reshape(B, T, three_c // 3)
    y.backward(grad_y)
    return y, qkv.grad


def project_step(project: Path):
    """The project's cudnn_attention.py: cuDNN's graphs, dQ/dK/dV written into qkv.grad."""
    sys.path.insert(0, str(project))
    from cudnn_attention import causal_attention

    def step(qkv: torch.Tensor, grad_y: torch.Tensor, heads: int):
        qkv = qkv.detach().requires_grad_()
        y = causal_attention(qkv, heads)
        y.backward(grad_y)
        return y, qkv.grad

    return step


def gpu_ms(fn, iters: int) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a rendered cuda pretraining project")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--per-step", type=int, default=96, help="calls per optimizer step")
    args = parser.parse_args()

    torch.manual_seed(0)
    C = args.heads * args.head_dim
    qkv = torch.randn(args.batch, args.seq, 3 * C, device="cuda", dtype=torch.bfloat16)
    grad_y = torch.randn(args.batch, args.seq, C, device="cuda", dtype=torch.bfloat16)
    print(
        f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
        f"{torch.cuda.get_device_name()}"
    )

    packed_step = project_step(args.project)
    y_ref, grad_ref = pytorch_step(qkv, grad_y, args.heads)
    y, grad = packed_step(qkv, grad_y, args.heads)
    torch.cuda.synchronize()
    print(
        f"output max |diff| {(y - y_ref).abs().max().item():.3e} "
        f"(max |y| {y_ref.abs().max().item():.3e}); "
        f"gradient max |diff| {(grad - grad_ref).abs().max().item():.3e} "
        f"(max |grad| {grad_ref.abs().max().item():.3e})"
    )

    rows = [
        ("PyTorch cuDNN SDPA + concatenation", lambda: pytorch_step(qkv, grad_y, args.heads)),
        ("cudnn_attention.py, packed q/k/v gradient", lambda: packed_step(qkv, grad_y, args.heads)),
    ]
    print(f"\n(B, heads, T, head_dim) = ({args.batch}, {args.heads}, {args.seq}, {args.head_dim})")
    print(f"{'variant':<52} {'ms/call':>9} {'ms/step':>9}")
    for name, fn in rows:
        ms = gpu_ms(fn, args.iters)
        print(f"{name:<52} {ms:9.3f} {ms * args.per_step:9.1f}")


if __name__ == "__main__":
    main()
