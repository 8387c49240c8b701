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
gradient. It needs a GPU and nvidia-cudnn-frontend.

    python benchmarks/attention_grad_layout.py --batch 64 --heads 12 --seq 1024 --head-dim 64
"""

import argparse
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def head_views(packed: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """(B, T, 3C) -> q, k, v as (B, heads, T, head_dim) views, as the projects' model.py makes."""
    B, T, three_c = packed.shape
    C = three_c // 3
    return [t.view(B, T, heads, C // heads).transpose(1, 2) for t in packed.split(C, dim=2)]


def pytorch_step(qkv: torch.Tensor, grad_y: torch.Tensor, heads: int):
    """PyTorch's cuDNN SDPA; autograd concatenates q, k and v's gradients into qkv.grad."""
    qkv = qkv.detach().requires_grad_()
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        y = F.scaled_dot_product_attention(*head_views(qkv, heads), is_causal=True)
    y.backward(grad_y)
    return y, qkv.grad


def cudnn_graphs(qkv: torch.Tensor, heads: int):
    """cuDNN forward and backward graphs for causal attention over the packed qkv; the
    backward writes dQ, dK, dV into a packed (B, T, 3C) buffer laid out like qkv."""
    import cudnn

    handle = cudnn.create_handle()
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
    q, k, v = head_views(qkv, heads)
    B, H, T, D = q.shape
    y = torch.empty(B, T, H, D, device=qkv.device, dtype=qkv.dtype).transpose(1, 2)
    stats = torch.empty(B, H, T, 1, device=qkv.device, dtype=torch.float32)
    causal = {"attn_scale": 1.0 / math.sqrt(D), "use_causal_mask": True}

    def new_graph():
        return cudnn.pygraph(
            io_data_type=cudnn.data_type.BFLOAT16,
            intermediate_data_type=cudnn.data_type.FLOAT,
            compute_data_type=cudnn.data_type.FLOAT,
            handle=handle,
        )

    def build(graph):
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()

    fwd = new_graph()
    fq, fk, fv = (fwd.tensor_like(t) for t in (q, k, v))
    fo, fstats = fwd.sdpa(
        name="attention",
        q=fq,
        k=fk,
        v=fv,
        generate_stats=True,
        **causal,
    )
    fo.set_output(True).set_dim(list(y.shape)).set_stride(list(y.stride()))
    fstats.set_output(True).set_data_type(cudnn.data_type.FLOAT)
    build(fwd)

    grad_qkv = torch.empty_like(qkv)
    dq, dk, dv = head_views(grad_qkv, heads)
    bwd = new_graph()
    bq, bk, bv, bo, bdo = (bwd.tensor_like(t) for t in (q, k, v, y, y))  # dO: laid out as y
    bstats = bwd.tensor_like(stats)
    bdq, bdk, bdv = bwd.sdpa_backward(
        name="attention_grad",
        q=bq,
        k=bk,
        v=bv,
        o=bo,
        dO=bdo,
        stats=bstats,
        **causal,
    )
    for node, out in ((bdq, dq), (bdk, dk), (bdv, dv)):
        node.set_output(True).set_dim(list(out.shape)).set_stride(list(out.stride()))
    build(bwd)

    workspace = torch.empty(
        max(fwd.get_workspace_size(), bwd.get_workspace_size()),
        device=qkv.device,
        dtype=torch.uint8,
    )

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
