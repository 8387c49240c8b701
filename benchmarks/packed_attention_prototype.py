"""A prototype: a pretraining project's attention through cuDNN's graphs, its q/k/v gradient
written packed, to measure end to end what attention_grad_layout.py measures alone.

    python benchmarks/packed_attention_prototype.py ptc ptc_packed   # a patched copy of ptc
    python benchmarks/pretraining_throughput.py ptc_packed --baseline ptc --steps 16 \
        --variants "compiled, chunked cross-entropy (default)"

`cudnn_attention(qkv, n_head)` takes the fused projection's (B, T, 3C) output and returns the
causal attention's (B, T, C) output. Forward and backward are `torch.library.custom_op`s, so
`torch.compile` keeps the model one graph around them; each runs a cuDNN graph built once per
shape (nvidia-cudnn-frontend, on the cuDNN that PyTorch loads). The backward graph writes dQ,
dK and dV into one (B, T, 3C) tensor, the gradient of the projection's output, so no
concatenation follows it. CUDA only, no dropout: a measurement, not yet the projects' code.
The copy's `model.py` imports it from a `cudnn_attention.py` beside it.
"""

import math
import re
import shutil
import sys
from pathlib import Path

import torch
from torch import Tensor

_handles: dict[int, object] = {}
_graphs: dict[tuple, tuple] = {}


def head_views(packed: Tensor, n_head: int) -> list[Tensor]:
    """(B, T, 3C) -> q, k, v as (B, n_head, T, head_dim) views."""
    B, T, three_c = packed.shape
    C = three_c // 3
    return [t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in packed.split(C, dim=2)]


def cudnn_handle(device: torch.device):
    import cudnn

    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _handles:
        with torch.cuda.device(index):
            _handles[index] = cudnn.create_handle()
    handle = _handles[index]
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(index).cuda_stream)
    return handle


def _built(graph) -> None:
    import cudnn

    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()


def graph_pair(qkv: Tensor, n_head: int, handle) -> tuple:
    """The forward and backward graphs for qkv's shape, built on first use."""
    import cudnn

    key = (tuple(qkv.shape), n_head, qkv.dtype, qkv.device)
    if key in _graphs:
        return _graphs[key]
    qkv = qkv.detach()  # the graphs read only shapes and strides; DLPack refuses autograd's
    io_type = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF}
    q, k, v = head_views(qkv, n_head)
    B, T, three_c = qkv.shape
    y = qkv.new_empty(B, T, three_c // 3).view(B, T, n_head, -1).transpose(1, 2)
    stats = qkv.new_empty(B, n_head, T, 1, dtype=torch.float32)
    causal = {"attn_scale": 1.0 / math.sqrt(q.size(-1)), "use_causal_mask": True}

    def new_graph():
        return cudnn.pygraph(
            io_data_type=io_type[qkv.dtype],
            intermediate_data_type=cudnn.data_type.FLOAT,
            compute_data_type=cudnn.data_type.FLOAT,
            handle=handle,
        )

    fwd = new_graph()
    fq, fk, fv = (fwd.tensor_like(t) for t in (q, k, v))
    fo, fstats = fwd.sdpa(name="attention", q=fq, k=fk, v=fv, generate_stats=True, **causal)
    fo.set_output(True).set_dim(list(y.shape)).set_stride(list(y.stride()))
    fstats.set_output(True).set_data_type(cudnn.data_type.FLOAT)
    _built(fwd)

    bwd = new_graph()
    bq, bk, bv, bo, bdo = (bwd.tensor_like(t) for t in (q, k, v, y, y))
    bstats = bwd.tensor_like(stats)
    grads = bwd.sdpa_backward(
        name="attention_grad", q=bq, k=bk, v=bv, o=bo, dO=bdo, stats=bstats, **causal
    )
    # The packed views' strides: dQ, dK and dV are parts of one tensor.
    for node, like in zip(grads, (q, k, v), strict=True):
        node.set_output(True).set_dim(list(like.shape)).set_stride(list(like.stride()))
    _built(bwd)
    workspace = max(fwd.get_workspace_size(), bwd.get_workspace_size())
    _graphs[key] = (
        fwd,
        (fq, fk, fv, fo, fstats),
        bwd,
        (bq, bk, bv, bo, bdo, bstats, *grads),
        workspace,
    )
    return _graphs[key]


@torch.library.custom_op("cudnn_attention::forward", mutates_args=(), device_types="cuda")
def attention_forward(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    handle = cudnn_handle(qkv.device)
    fwd, (fq, fk, fv, fo, fstats), _, _, workspace = graph_pair(qkv, n_head, handle)
    B, T, three_c = qkv.shape
    y = qkv.new_empty(B, T, three_c // 3)
    stats = qkv.new_empty(B, n_head, T, 1, dtype=torch.float32)
    q, k, v = head_views(qkv, n_head)
    buffer = torch.empty(workspace, device=qkv.device, dtype=torch.uint8)
    fwd.execute({fq: q, fk: k, fv: v, fo: y, fstats: stats}, buffer, handle=handle)
    return y, stats


@attention_forward.register_fake
def _(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    B, T, three_c = qkv.shape
    return qkv.new_empty(B, T, three_c // 3), qkv.new_empty(B, n_head, T, 1, dtype=torch.float32)


@torch.library.custom_op("cudnn_attention::backward", mutates_args=(), device_types="cuda")
def attention_backward(
    grad_y: Tensor, qkv: Tensor, y: Tensor, stats: Tensor, n_head: int
) -> Tensor:
    handle = cudnn_handle(qkv.device)
    _, _, bwd, tensors, workspace = graph_pair(qkv, n_head, handle)
    bq, bk, bv, bo, bdo, bstats, bdq, bdk, bdv = tensors
    grad_qkv = torch.empty_like(qkv)
    q, k, v = head_views(qkv, n_head)
    dq, dk, dv = head_views(grad_qkv, n_head)
    heads = y.view(*y.shape[:2], n_head, -1).transpose(1, 2)
    grad_heads = grad_y.view(*grad_y.shape[:2], n_head, -1).transpose(1, 2)
    buffer = torch.empty(workspace, device=qkv.device, dtype=torch.uint8)
    bwd.execute(
        {bq: q, bk: k, bv: v, bo: heads, bdo: grad_heads, bstats: stats, bdq: dq, bdk: dk, bdv: dv},
        buffer,
        handle=handle,
    )
    return grad_qkv


@attention_backward.register_fake
def _(grad_y: Tensor, qkv: Tensor, y: Tensor, stats: Tensor, n_head: int) -> Tensor:
    return torch.empty_like(qkv)


def _setup_context(ctx, inputs, output) -> None:
    qkv, n_head = inputs
    y, stats = output
    ctx.save_for_backward(qkv, y, stats)
    ctx.n_head = n_head


def _backward(ctx, grad_y: Tensor, _grad_stats: Tensor):
    qkv, y, stats = ctx.saved_tensors
    return attention_backward(grad_y.contiguous(), qkv, y, stats, ctx.n_head), None


attention_forward.register_autograd(_backward, setup_context=_setup_context)


def cudnn_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal attention of the fused projection's (B, T, 3C) output -> (B, T, C)."""
    return attention_forward(qkv.contiguous(), n_head)[0]


FORWARD = re.compile(
    r"(    def forward\(self, x: torch\.Tensor\) -> torch\.Tensor:\n        B, T, C = x\.shape\n)"
    r".*?(        return self\.resid_dropout\(self\.proj\(y\)\))",
    re.S,
)


def patch(project: Path, copy: Path) -> None:
    """Copy the project, and make the copy's attention call cudnn_attention."""
    shutil.copytree(project, copy)
    shutil.copy(__file__, copy / "cudnn_attention.py")
    model = copy / "model.py"
    text, count = FORWARD.subn(
        r"\1        y = cudnn_attention(self.qkv(x), self.n_head)\n\2", model.read_text()
    )
    if count != 1:
        sys.exit(f"{model}: the attention's forward was not found")
    model.write_text(
        text.replace(
            "\nfrom fused_mlp", "\nfrom cudnn_attention import cudnn_attention\nfrom fused_mlp", 1
        )
    )


if __name__ == "__main__":
    patch(Path(sys.argv[1]), Path(sys.argv[2]))
