"""The MLP with GELU inside cuBLASLt's matmuls (`model.fused_mlp`).

Unfused, GELU is a kernel of its own between the MLP's two matmuls: one more pass over the
(tokens, 4 x width) activations forward, and one backward for GELU's derivative. cuBLASLt
applies GELU while the first matmul writes its output (epilogue GELU_AUX, which also writes
the pre-activation that backward needs) and GELU's derivative while the second matmul's
input gradient is written (epilogue DGELU). nvmath-python, NVIDIA's Python interface to
cuBLASLt, exposes both. On an H100 the gpt2-124m step is 4% faster (benchmarks/README.md).

The two matmuls are custom ops: torch.compile keeps them whole and compiles around them. On
a GPU they are cuBLASLt calls; elsewhere, the same math in PyTorch (which the tests check
against the unfused MLP). cuBLASLt's GELU is the tanh approximation, as is model.py's.
"""

import torch
import torch.nn.functional as F

try:
    from nvmath.linalg.advanced import Matmul, MatmulEpilog
except ImportError:  # a CPU environment may lack it; train.py says so before it is needed on a GPU
    Matmul = MatmulEpilog = None

NVMATH_MISSING = Matmul is None

# One planned cuBLASLt matmul per operand layout and epilogue: planning and timing the
# candidates cost milliseconds, once; reusing the plan with new operands, microseconds.
_plans: dict[tuple, "Matmul"] = {}


def _cublaslt(a: torch.Tensor, b: torch.Tensor, epilog, aux: torch.Tensor | None = None):
    stream = torch.cuda.current_stream(a.device)
    inputs = None if aux is None else {"gelu_aux": aux}
    key = (a.device, a.dtype, a.shape, a.stride(), b.shape, b.stride(), epilog)
    mm = _plans.get(key)
    if mm is None:
        mm = _plans[key] = Matmul(a, b, stream=stream)
        mm.plan(preferences={"limit": 16}, epilog=epilog, epilog_inputs=inputs, stream=stream)
        # cuBLASLt's first guess for these epilogues ran at two thirds of a plain matmul's speed
        # on an H100; timing its candidates once, on the first call, finds a faster one.
        mm.autotune(iterations=5, stream=stream)
    else:
        mm.reset_operands_unchecked(a=a, b=b, epilog_inputs=inputs, stream=stream)
    out = mm.execute(stream=stream)
    mm.release_operands()  # the plan must not keep this call's tensors alive
    return out


# cuBLASLt writes the epilogue's auxiliary matrix column-major. So each op computes the
# transposed product, weight @ x.T: its column-major result is x @ weight.T row-major.


@torch.library.custom_op("fused_mlp::gelu_matmul", mutates_args=(), device_types="cuda")
def gelu_matmul(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gelu(x @ weight.T) and the pre-activation x @ weight.T, in one matmul."""
    act_t, aux = _cublaslt(weight, x.t(), MatmulEpilog.GELU_AUX)
    return act_t.t(), aux["gelu_aux"].t()


@gelu_matmul.register_kernel("cpu")
def _(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pre = x @ weight.t()
    return F.gelu(pre, approximate="tanh"), pre


@gelu_matmul.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    act = x.new_empty(x.size(0), weight.size(0))
    return act, torch.empty_like(act)


@torch.library.custom_op("fused_mlp::dgelu_matmul", mutates_args=(), device_types="cuda")
def dgelu_matmul(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """(grad @ weight) * gelu'(pre): the gradient at the pre-activation, in one matmul."""
    return _cublaslt(weight.t(), grad.t(), MatmulEpilog.DGELU, aux=pre.t()).t()


@dgelu_matmul.register_kernel("cpu")
def _(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_backward(grad @ weight, pre, approximate="tanh")


@dgelu_matmul.register_fake
def _(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(pre)


class GeluMLP(torch.autograd.Function):
    """gelu(x @ w_fc.T) @ w_proj.T for x (tokens, width), with GELU in the matmuls both ways."""

    @staticmethod
    def forward(ctx, x, w_fc, w_proj):
        act, pre = gelu_matmul(x, w_fc)
        ctx.save_for_backward(x, w_fc, w_proj, act, pre)
        return act @ w_proj.t()

    @staticmethod
    def backward(ctx, grad_out):
        x, w_fc, w_proj, act, pre = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_pre = dgelu_matmul(grad_out, w_proj, pre)
        return grad_pre @ w_fc, grad_pre.t() @ x, grad_out.t() @ act


def gelu_mlp(x: torch.Tensor, w_fc: torch.Tensor, w_proj: torch.Tensor) -> torch.Tensor:
    """The MLP of x (..., width) with its weights, in autocast's dtype where it is on (as
    F.linear would compute it): custom ops are not autocast's to cast."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    flat = x.reshape(-1, x.size(-1)).to(dtype)
    return GeluMLP.apply(flat, w_fc.to(dtype), w_proj.to(dtype)).view(x.shape)
