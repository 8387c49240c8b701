"""The chunked cross-entropy alone, compiled: its time per micro-batch and its softmax pass's.

    python benchmarks/loss_kernels.py ptc                     # a rendered cuda pretraining project
    python benchmarks/loss_kernels.py ptc --baseline ptc_old  # and another render, side by side

Runs each project's `LinearCrossEntropy` (its `model.py`) forward and backward on random
hidden states at its config's micro-batch (batch_size x block_size rows), the preset's width
and GPT-2's padded vocabulary, compiled under bf16 autocast as `train.py` runs it. It prints
milliseconds per micro-batch and per optimizer step, the loss and gradient norms (the rows
must agree), and the GPU time of the kernels other than the matmuls: the softmax pass.

A reference row does the softmax pass with a Triton kernel, one program per row: an online
max and sum over the row, then the gradient written over the scores. That is what the
memory bandwidth allows for this pass (two reads and one write of the scores); it is a
measuring stick, not a setting of the projects.
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl
import yaml
from pretraining_profile import kind_of  # kernel names by kind: matmul, attention, inductor...
from torch.profiler import ProfilerActivity, profile

VOCAB = 50304  # GPT-2's vocabulary, padded to a multiple of 64


@triton.jit
def _softmax_grad_rows(scores_ptr, targets_ptr, losses_ptr, stride, vocab, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = scores_ptr + row * stride
    peak = tl.full((), float("-inf"), tl.float32)
    total = tl.zeros((), tl.float32)
    for start in range(0, vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
        new_peak = tl.maximum(peak, tl.max(x, 0))
        total = total * tl.exp(peak - new_peak) + tl.sum(tl.exp(x - new_peak), 0)
        peak = new_peak
    log_z = peak + tl.log(total)
    target = tl.load(targets_ptr + row)
    tl.store(losses_ptr + row, log_z - tl.load(base + target).to(tl.float32))
    for start in range(0, vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        grad = tl.exp(x - log_z) - tl.where(cols == target, 1.0, 0.0)
        tl.store(base + cols, grad.to(scores_ptr.dtype.element_ty), mask=mask)


def with_triton_softmax(loss_class: type) -> type:
    """The project's chunked loss with the softmax pass in Triton: the same matmuls, and the
    project's own backward, which scales the gradients this forward saves."""

    class TritonReference(loss_class):
        @staticmethod
        def forward(ctx, hidden, weight, targets, chunk_size):
            n_rows = hidden.size(0)
            loss = torch.zeros((), device=hidden.device)
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros_like(weight, dtype=torch.float32)
            low = weight.to(hidden.dtype)  # cast once, as autocast does in a compiled graph
            for start in range(0, n_rows, chunk_size):
                rows = slice(start, start + chunk_size)
                h, y = hidden[rows], targets[rows]
                scores = h @ low.t()
                losses = torch.empty(scores.size(0), device=scores.device)
                _softmax_grad_rows[(scores.size(0),)](
                    scores, y, losses, scores.stride(0), scores.size(1), BLOCK=4096, num_warps=8
                )
                loss += losses.sum()
                grad_hidden[rows] = scores @ low
                torch.addmm(grad_weight, scores.t(), h, out_dtype=torch.float32, out=grad_weight)
            ctx.save_for_backward(grad_hidden, grad_weight)
            ctx.n_rows = n_rows
            return loss / n_rows

    return TritonReference


def project_loss(project: Path):
    """The project's LinearCrossEntropy, its micro-batch rows, width, chunk and accumulation."""
    spec = importlib.util.spec_from_file_location(f"model_{project.name}", project / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dynamo re-imports the module that holds the function
    sys.path.insert(0, str(project))  # a cuda model.py imports fused_mlp.py beside it
    spec.loader.exec_module(module)
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    m, t = cfg["model"], cfg["training"]
    width = module.PRESETS[m["preset"]][2]
    rows = t["batch_size"] * m["block_size"]
    return module.LinearCrossEntropy, rows, width, m["loss_chunk_size"], t["grad_accum_steps"]


def measure(label, loss_fn, hidden0, weight, targets, accum, iters):
    hidden = hidden0.clone().requires_grad_()

    def once():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(hidden)
        loss.backward()
        return loss

    for _ in range(3):  # compilation and autotuning
        once()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(iters):
        once()
    torch.cuda.synchronize()
    ms = 1e3 * (time.perf_counter() - started) / iters
    hidden.grad, weight.grad = None, None
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        loss = once()
        torch.cuda.synchronize()
    other = sum(e.self_device_time_total for e in prof.key_averages() if kind_of(e.key) != "matmul")
    print(
        f"| {label} | {ms:.2f} | {ms * accum:.0f} | {other / 1e3:.2f} | {loss.item():.6f} "
        f"| {hidden.grad.float().norm():.6f} | {weight.grad.norm():.6f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a rendered cuda pretraining project")
    parser.add_argument("--baseline", type=Path, help="another render, e.g. an older scaffold's")
    parser.add_argument("--iters", type=int, default=16, help="timed micro-batches")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no GPU: this script times CUDA kernels")
    loss_class, rows, width, chunk, accum = project_loss(args.project)
    torch.manual_seed(0)
    hidden0 = torch.randn(rows, width, device="cuda").bfloat16()
    weight = (0.02 * torch.randn(VOCAB, width, device="cuda")).requires_grad_()
    targets = torch.randint(0, 50257, (rows,), device="cuda")
    print(f"{rows} rows x {width} -> {VOCAB}, chunks of {chunk}, {accum} micro-batches per step\n")
    print("| loss | ms per micro-batch | ms per step | non-matmul kernels, ms per micro-batch "
          "| loss | grad hidden norm | grad weight norm |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    contenders = [(args.project.name, loss_class)]
    if args.baseline:
        contenders.append((f"{args.baseline.name} (baseline)", project_loss(args.baseline)[0]))
    for label, cls in contenders:
        torch._dynamo.reset()
        fn = torch.compile(lambda h, cls=cls: cls.apply(h, weight, targets, chunk))
        measure(label, fn, hidden0, weight, targets, accum, args.iters)
    reference_class = with_triton_softmax(loss_class)
    reference = lambda h: reference_class.apply(h, weight, targets, chunk)  # noqa: E731
    label = "Triton softmax pass (reference)"
    measure(label, reference, hidden0, weight, targets, accum, args.iters)


if __name__ == "__main__":
    main()
