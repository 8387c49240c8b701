"""A GPT decoder (GPT-2 style: pre-LayerNorm blocks, GELU MLP, learned positions).

GELU is the tanh approximation, as in OpenAI's GPT-2 and in cuBLASLt's fused GELU (fused_mlp.py).

Attention runs through `F.scaled_dot_product_attention` (flash / memory-efficient kernels
where the device has them); the output projection reuses the token embedding (weight tying).
While training, attention can run through cuDNN's graphs instead, which write its q/k/v
gradient packed (`model.cudnn_attention`, cudnn_attention.py).
Given targets, the model returns the loss (`GPT.loss`), so torch.compile compiles the loss
with the model, and the cross-entropy never holds the full (tokens, vocab) logits. Reload a
trained model with:

    model = GPT(GPTConfig.from_preset(preset, vocab_size=..., block_size=...))
    safetensors.torch.load_model(model, "runs/.../model.safetensors")
    logits = model(idx)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from cudnn_attention import causal_attention
from fused_mlp import gelu_mlp

# Architecture presets: (layers, heads, width). The GPT-2 shapes are OpenAI's; the larger
# ones follow the GPT-3 paper. "tiny" is for smoke tests.
PRESETS = {
    "tiny": (2, 2, 64),
    "gpt2-124m": (12, 12, 768),
    "gpt2-350m": (24, 16, 1024),
    "gpt2-774m": (36, 20, 1280),
    "gpt2-1.5b": (48, 25, 1600),
    "gpt-2.7b": (32, 32, 2560),
    "gpt-6.7b": (32, 32, 4096),
}

# SDPA kernels in PyTorch's own order of preference. On Hopper GPUs cuDNN's is the fastest
# (benchmarks/sdpa_kernels.py) but comes last, so `attention_kernel` can move one first.
SDPA_KERNELS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = False
    gradient_checkpointing: bool = False
    loss_chunk_size: int = 0  # tokens per cross-entropy chunk; 0: the whole batch at once
    attention_kernel: str | None = None  # an SDPA_KERNELS name tried first; None: PyTorch's order
    fp32_residual: bool = False  # under autocast, True keeps the residual stream FP32
    fused_mlp: bool = False  # GELU inside the MLP's matmuls (fused_mlp.py) while training
    cudnn_attention: bool = False  # cuDNN writes the q/k/v gradient packed (cudnn_attention.py)

    def __post_init__(self) -> None:
        if self.attention_kernel not in (None, *SDPA_KERNELS):
            raise ValueError(
                f"unknown attention_kernel {self.attention_kernel!r}; choose one of "
                f"{', '.join(SDPA_KERNELS)} or null"
            )
        if self.fused_mlp and self.bias:
            raise ValueError(
                "model.fused_mlp takes no biases: set model.bias or model.fused_mlp to false"
            )
        if self.cudnn_attention and self.dropout:
            raise ValueError(
                "model.cudnn_attention has no attention dropout: set model.dropout to 0 or "
                "model.cudnn_attention to false"
            )

    @classmethod
    def from_preset(cls, preset: str, **kwargs) -> "GPTConfig":
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
        n_layer, n_head, n_embd = PRESETS[preset]
        return cls(n_layer=n_layer, n_head=n_head, n_embd=n_embd, **kwargs)


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, `chunk_size` rows at a time.

    Only one chunk of logits exists at a time. The forward pass computes each chunk's
    gradients as well (softmax minus one-hot, the cross-entropy's own derivative), so
    backward only scales them and no chunk is kept or recomputed. Log-sum-exp, the
    softmax and the weight gradient accumulate in FP32; the matmuls run in the compute
    dtype, as `F.linear` would.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size):
        n_rows = hidden.size(0)
        wide = torch.promote_types(hidden.dtype, torch.float32)  # FP32; FP64 for FP64 inputs
        loss = torch.zeros((), dtype=wide, device=hidden.device)
        with_grad = any(ctx.needs_input_grad[:2])
        if with_grad:
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros_like(weight, dtype=wide)
        for start in range(0, n_rows, chunk_size):
            rows = slice(start, start + chunk_size)
            h, y = hidden[rows], targets[rows, None]
            scores = h @ weight.t()  # (chunk, vocab) in the compute dtype
            logits = scores.to(wide)
            # Max, exp and sum rather than logsumexp: compiled, they become one online-softmax
            # pass that the softmax below shares, so each chunk is read twice, not three times
            # (1-2% of a step on an H100).
            peak = logits.amax(dim=-1, keepdim=True)
            exp = torch.exp(logits - peak)
            total = exp.sum(dim=-1, keepdim=True)
            loss += (peak + total.log() - logits.gather(1, y)).sum()
            if with_grad:
                # Softmax cast to the compute dtype first, then minus one at each target: compiled,
                # the softmax is one elementwise pass that writes the low-precision gradient
                # directly, and the in-place subtraction touches one element per row.
                grad = exp.div_(total).to(scores.dtype)
                grad.scatter_add_(1, y, torch.full_like(y, -1, dtype=grad.dtype))
                grad_hidden[rows] = grad @ weight
                grad_weight += grad.t() @ h
        if with_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        ctx.n_rows = n_rows
        return loss / n_rows

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_loss / ctx.n_rows
        return grad_hidden * scale, grad_weight * scale, None, None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        first = [SDPA_KERNELS[config.attention_kernel]] if config.attention_kernel else []
        # A kernel that cannot run this input (device, dtype, dropout) passes to the next.
        self.kernels = first + [k for k in SDPA_KERNELS.values() if k not in first]
        self.packed_grad = config.cudnn_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x)
        # Training only: evaluation and generation (no gradient, lengths that vary) take SDPA.
        if self.packed_grad and torch.is_grad_enabled():
            return self.resid_dropout(self.proj(causal_attention(qkv, self.n_head)))
        q, k, v = qkv.split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        with sdpa_kernel(self.kernels, set_priority=True):
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.fused = config.fused_mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and torch.is_grad_enabled():
            return self.dropout(gelu_mlp(x, self.fc.weight, self.proj.weight))
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.gradient_checkpointing = config.gradient_checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training:
            # R-MEMORY: recompute the block's activations in backward instead of storing them.
            return checkpoint(self.residual_branches, x, use_reentrant=False)
        return self.residual_branches(x)

    def residual_branches(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.init_weights()

    def init_weights(self) -> None:
        """Initialise every parameter, one by one in a fixed order: train.py replays the same
        order on a model built on the meta device and sharded (FSDP) before it has storage."""
        for name, param in self.named_parameters():
            self.init_parameter(name, param)

    def init_parameter(self, name: str, tensor: torch.Tensor) -> None:
        """GPT-2: N(0, 0.02) matrices, residual projections scaled by 1/sqrt(2 * n_layer);
        LayerNorm weights 1 and biases 0."""
        if name.endswith("proj.weight"):
            nn.init.normal_(tensor, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
        elif tensor.dim() >= 2:  # linear and embedding weights
            nn.init.normal_(tensor, mean=0.0, std=0.02)
        elif name.endswith("weight"):  # LayerNorm
            nn.init.ones_(tensor)
        else:
            nn.init.zeros_(tensor)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab_size); with targets (B, T), already
        shifted, the mean cross-entropy instead."""
        T = idx.size(1)
        assert T <= self.config.block_size, f"sequence of {T} > block_size {self.config.block_size}"
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        device_type = idx.device.type
        if torch.is_autocast_enabled(device_type) and not self.config.fp32_residual:
            # The FP32 embeddings would make the whole residual stream FP32. In autocast's dtype
            # it is what bf16 weights give (Megatron, torchtitan's FSDP): every elementwise and
            # LayerNorm kernel moves half the bytes, and the step is 5% faster on an H100.
            x = x.to(torch.get_autocast_dtype(device_type))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:
            # Weight tying: the output projection is the token embedding.
            return F.linear(x, self.wte.weight)
        return self.loss(x, targets)

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the final hidden states x (B, T, C) against targets."""
        # R-LOSS-SHAPE: (B*T, C) hidden states against (B*T,) targets; never shifted here.
        hidden, flat_targets = x.view(-1, x.size(-1)), targets.view(-1)
        if self.config.loss_chunk_size:
            return LinearCrossEntropy.apply(
                hidden, self.wte.weight, flat_targets, self.config.loss_chunk_size
            )
        return F.cross_entropy(F.linear(hidden, self.wte.weight), flat_targets)

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6N + attention (PaLM appendix B, as in nanoGPT)."""
        n_params = sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()
        c = self.config
        return 6 * n_params + 12 * c.n_layer * c.n_embd * c.block_size
