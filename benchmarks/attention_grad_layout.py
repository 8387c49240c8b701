"""Causal attention's gradients written where the fused q/k/v projection needs them.

A GPT block computes q, k and v with one matmul, as (B, T, 3C), and splits them into heads.
PyTorch's cuDNN attention returns their gradients as three separate tensors, so backward
concatenates them into the (B, T, 3C) gradient of that matmul: a copy of 3 x B x T x C
values per layer and micro-batch (19 ms of an H100 step at gpt2-124m, benchmarks/README.md).
cuDNN's graph API (nvidia-cudnn-frontend) lets the caller give the gradients' strides, so
its backward kernel can write them straight into one (B, T, 3, heads, head_dim) buffer.

This script times both at one shape, forward and backward in bf16, and checks that they
agree: PyTorch's `scaled_dot_product_attention` with the cuDNN kernel (the projects'
default) plus the concatenation autograd does, against cuDNN's graphs writing the packed
gradient (the graphs packed_attention_prototype.py builds, on buffers allocated once). It
needs a GPU and nvidia-cudnn-frontend.

    python benchmarks/attention_grad_layout.py --batch 64 --heads 12 --seq 1024 --head-dim 64
"""

import argparse

import torch
import torch.nn.functional as F
from packed_attention_prototype import cudnn_handle, graph_pair, head_views
from torch.nn.attention import SDPBackend, sdpa_kernel


def pytorch_step(qkv: torch.Tensor, grad_y: torch.Tensor, heads: int):
    """PyTorch's cuDNN SDPA; autograd concatenates q, k and v's gradients into qkv.grad."""
    qkv = qkv.detach().requires_grad_()
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        y = F.scaled_dot_product_attention(*head_views(qkv, heads), is_causal=True)
    y.backward(grad_y)
    return y, qkv.grad


def cudnn_graphs(qkv: torch.Tensor, heads: int):
    """The prototype's cuDNN graphs for qkv's shape (packed_attention_prototype.py), run on
    buffers allocated once: the backward writes dQ, dK, dV into one (B, T, 3C) tensor laid
    out like qkv."""
    handle = cudnn_handle(qkv.device)
    fwd, (fq, fk, fv, fo, fstats), bwd, grad_nodes, workspace_size = graph_pair(qkv, heads, handle)
    bq, bk, bv, bo, bdo, bstats, bdq, bdk, bdv = grad_nodes
    B, T, three_c = qkv.shape
    y = qkv.new_empty(B, T, three_c // 3).view(B, T, heads, -1).transpose(1, 2)
    stats = torch.empty(B, heads, T, 1, device=qkv.device, dtype=torch.float32)
    grad_qkv = torch.empty_like(qkv)
    dq, dk, dv = head_views(grad_qkv, heads)
    workspace = torch.empty(workspace_size, device=qkv.device, dtype=torch.uint8)

    def step(qkv_in: torch.Tensor, grad_y_in: torch.Tensor):
        # The graphs were built for qkv's and y's strides: the inputs must be laid out alike.
        qi, ki, vi = head_views(qkv_in, heads)
        fwd.execute({fq: qi, fk: ki, fv: vi, fo: y, fstats: stats}, workspace, handle=handle)
        bwd.execute(
            {
                bq: qi,
                bk: ki,
                bv: vi,
                bo: y,
                bdo: grad_y_in,
                bstats: stats,
                bdq: dq,
                bdk: dk,
                bdv: dv,
            },
            workspace,
            handle=handle,
        )
        return y, grad_qkv

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
    grad_y = grad_y.view(args.batch, args.seq, args.heads, args.head_dim).transpose(1, 2)
    print(
        f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
        f"{torch.cuda.get_device_name()}"
    )

    y_ref, grad_ref = pytorch_step(qkv, grad_y, args.heads)
    packed = cudnn_graphs(qkv, args.heads)
    y, grad = packed(qkv, grad_y)
    torch.cuda.synchronize()
    print(
        f"output max |diff| {(y - y_ref).abs().max().item():.3e} "
        f"(max |y| {y_ref.abs().max().item():.3e}); "
        f"gradient max |diff| {(grad - grad_ref).abs().max().item():.3e} "
        f"(max |grad| {grad_ref.abs().max().item():.3e})"
    )

    rows = [
        (
            "PyTorch cuDNN SDPA + concatenation (the projects)",
            lambda: pytorch_step(qkv, grad_y, args.heads),
        ),
        ("cuDNN graphs, packed q/k/v gradient", lambda: packed(qkv, grad_y)),
    ]
    print(f"\n(B, heads, T, head_dim) = ({args.batch}, {args.heads}, {args.seq}, {args.head_dim})")
    print(f"{'variant':<52} {'ms/call':>9} {'ms/step':>9}")
    for name, fn in rows:
        ms = gpu_ms(fn, args.iters)
        print(f"{name:<52} {ms:9.3f} {ms * args.per_step:9.1f}")


if __name__ == "__main__":
    main()
