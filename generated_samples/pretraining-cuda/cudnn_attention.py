"""Causal attention whose q/k/v gradient cuDNN writes packed (`model.cudnn_attention`).

Attention's input is the q/k/v projection's (B, T, 3C) output, split into three views.
PyTorch's attention backward returns dQ, dK and dV as three tensors, and autograd then
concatenates them into the projection's (B, T, 3C) gradient: one more pass over it, both
ways through memory. cuDNN's graph API (nvidia-cudnn-frontend, on the cuDNN that PyTorch
loads) takes every output's strides from its caller, so here its backward writes dQ, dK and
dV straight into their places in that one gradient. On an H100 the gpt2-124m and gpt2-774m
steps are 1.5-2% faster (benchmarks/README.md).

Forward and backward are custom ops: torch.compile keeps them whole and compiles around
them. On a GPU each runs a cuDNN graph, built once per shape; elsewhere, PyTorch's own
flash-attention kernels for the CPU, which the tests check against the model's SDPA path.
There is no attention dropout.
"""

import math
from typing import NamedTuple

import torch
from torch import Tensor

try:
    import cudnn
except ImportError:  # a CPU environment may lack it; train.py says so before it is needed on a GPU
    cudnn = None

CUDNN_MISSING = cudnn is None


def heads(t: Tensor, n_head: int) -> Tensor:
    """(B, T, C) -> a (B, n_head, T, head_dim) view of it."""
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


def stats_dtype(qkv: Tensor) -> torch.dtype:
    """The log-sum-exp's dtype: FP32, or FP64 for FP64 inputs (the CPU kernels' gradient checks)."""
    return torch.promote_types(qkv.dtype, torch.float32)


def merged(t: Tensor) -> Tensor:
    """(B, n_head, T, head_dim) -> (B, T, C), contiguous."""
    B, H, T, D = t.shape
    return t.transpose(1, 2).reshape(B, T, H * D)


class _Graphs(NamedTuple):
    """A shape's cuDNN graphs and the ids of their tensors, in the order the ops pass them."""

    forward: object
    forward_ids: tuple[int, ...]  # q, k, v, y, stats
    backward: object
    backward_ids: tuple[int, ...]  # q, k, v, y, grad_y, stats, grad_q, grad_k, grad_v
    workspace: int  # bytes: the larger of the two graphs' scratch space


_handles: dict[int, object] = {}
_graphs: dict[tuple, _Graphs] = {}


def _handle(device: torch.device):
    """This device's cuDNN handle, set to run on PyTorch's current stream."""
    if device.index not in _handles:
        with torch.cuda.device(device):
            _handles[device.index] = cudnn.create_handle()
    handle = _handles[device.index]
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(device).cuda_stream)
    return handle


def _build(graph) -> None:
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()


def _graphs_for(qkv: Tensor, n_head: int, handle) -> _Graphs:
    """The forward and backward graphs for qkv's shape: built on first use (milliseconds),
    then only looked up, so a call costs the host a few microseconds."""
    key = (qkv.shape, n_head, qkv.dtype, qkv.device)
    if key in _graphs:
        return _graphs[key]
    io_types = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF}
    if qkv.dtype not in io_types:
        raise TypeError(f"cuDNN's attention computes in bf16 or fp16, not {qkv.dtype}")
    # The graphs take their shapes and strides from these views (DLPack refuses autograd's
    # tensors, hence detach); each call then passes only data pointers.
    q, k, v = (heads(t, n_head) for t in qkv.detach().chunk(3, dim=2))
    B, T, three_c = qkv.shape
    y = heads(qkv.new_empty(B, T, three_c // 3), n_head)
    stats = torch.empty(*q.shape[:3], 1, device=qkv.device, dtype=torch.float32)
    causal = {"attn_scale": 1 / math.sqrt(q.size(-1)), "use_causal_mask": True}

    def new_graph():
        return cudnn.pygraph(
            io_data_type=io_types[qkv.dtype],
            intermediate_data_type=cudnn.data_type.FLOAT,
            compute_data_type=cudnn.data_type.FLOAT,
            handle=handle,
        )

    forward = new_graph()
    f_in = [forward.tensor_like(t) for t in (q, k, v)]
    f_y, f_stats = forward.sdpa(
        name="attention", q=f_in[0], k=f_in[1], v=f_in[2], generate_stats=True, **causal
    )
    f_y.set_output(True).set_dim(list(y.shape)).set_stride(list(y.stride()))
    f_stats.set_output(True).set_data_type(cudnn.data_type.FLOAT)
    _build(forward)

    backward = new_graph()
    b_in = [backward.tensor_like(t) for t in (q, k, v, y, y, stats)]
    b_q, b_k, b_v, b_y, b_grad_y, b_stats = b_in
    b_grads = backward.sdpa_backward(
        name="attention_grad", q=b_q, k=b_k, v=b_v, o=b_y, dO=b_grad_y, stats=b_stats, **causal
    )
    # The point of it all: dQ, dK and dV take q, k and v's strides, parts of one tensor.
    for grad, like in zip(b_grads, (q, k, v), strict=True):
        grad.set_output(True).set_dim(list(like.shape)).set_stride(list(like.stride()))
    _build(backward)

    _graphs[key] = _Graphs(
        forward,
        tuple(t.get_uid() for t in (*f_in, f_y, f_stats)),
        backward,
        tuple(t.get_uid() for t in (*b_in, *b_grads)),
        max(forward.get_workspace_size(), backward.get_workspace_size()),
    )
    return _graphs[key]


def _run(graph, ids: tuple[int, ...], pointers: tuple[int, ...], workspace: int, device, handle):
    scratch = torch.empty(workspace, device=device, dtype=torch.uint8)
    graph.execute(dict(zip(ids, pointers, strict=True)), scratch.data_ptr(), handle=handle)


def _qkv_pointers(qkv: Tensor) -> tuple[int, int, int]:
    """Where q, k and v begin in the packed tensor: a third of a row apart."""
    start, third = qkv.data_ptr(), qkv.size(-1) // 3 * qkv.element_size()
    return start, start + third, start + 2 * third


@torch.library.custom_op("cudnn_attention::forward", mutates_args=(), device_types="cuda")
def attention_forward(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    """Causal attention of (B, T, 3C) q/k/v -> the output (B, T, C) and each row's
    log-sum-exp of its scores (B, n_head, T), which backward needs."""
    qkv = qkv.contiguous()
    handle = _handle(qkv.device)
    graphs = _graphs_for(qkv, n_head, handle)
    B, T, three_c = qkv.shape
    y = qkv.new_empty(B, T, three_c // 3)
    stats = qkv.new_empty(B, n_head, T, dtype=stats_dtype(qkv))
    pointers = (*_qkv_pointers(qkv), y.data_ptr(), stats.data_ptr())
    _run(graphs.forward, graphs.forward_ids, pointers, graphs.workspace, qkv.device, handle)
    return y, stats


@attention_forward.register_kernel("cpu")
def _(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    q, k, v = (heads(t, n_head) for t in qkv.chunk(3, dim=2))
    y, stats = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)
    return merged(y), stats.contiguous()


@attention_forward.register_fake
def _(qkv: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    B, T, three_c = qkv.shape
    y = qkv.new_empty(B, T, three_c // 3)
    return y, qkv.new_empty(B, n_head, T, dtype=stats_dtype(qkv))


@torch.library.custom_op("cudnn_attention::backward", mutates_args=(), device_types="cuda")
def attention_backward(
    grad_y: Tensor, qkv: Tensor, y: Tensor, stats: Tensor, n_head: int
) -> Tensor:
    """The gradient of the packed (B, T, 3C) q/k/v, written in place of one concatenation."""
    grad_y, qkv = grad_y.contiguous(), qkv.contiguous()
    handle = _handle(qkv.device)
    graphs = _graphs_for(qkv, n_head, handle)
    grad_qkv = torch.empty_like(qkv)
    pointers = (
        *_qkv_pointers(qkv),
        y.data_ptr(),
        grad_y.data_ptr(),
        stats.data_ptr(),
        *_qkv_pointers(grad_qkv),
    )
    _run(graphs.backward, graphs.backward_ids, pointers, graphs.workspace, qkv.device, handle)
    return grad_qkv


@attention_backward.register_kernel("cpu")
def _(grad_y: Tensor, qkv: Tensor, y: Tensor, stats: Tensor, n_head: int) -> Tensor:
    q, k, v = (heads(t, n_head) for t in qkv.chunk(3, dim=2))
    grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        heads(grad_y, n_head), q, k, v, heads(y, n_head), stats, 0.0, True
    )
    return torch.cat([merged(g) for g in grads], dim=2)


@attention_backward.register_fake
def _(grad_y: Tensor, qkv: Tensor, y: Tensor, stats: Tensor, n_head: int) -> Tensor:
    return torch.empty_like(qkv)


def _save_for_backward(ctx, inputs, output) -> None:
    qkv, n_head = inputs
    y, stats = output
    ctx.save_for_backward(qkv, y, stats)
    ctx.n_head = n_head


def _backward(ctx, grad_y: Tensor, _grad_stats: Tensor) -> tuple[Tensor, None]:
    qkv, y, stats = ctx.saved_tensors
    return attention_backward(grad_y, qkv, y, stats, ctx.n_head), None


attention_forward.register_autograd(_backward, setup_context=_save_for_backward)


def causal_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal attention of the q/k/v projection's (B, T, 3C) output -> (B, T, C)."""
    return attention_forward(qkv, n_head)[0]
