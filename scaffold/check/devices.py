"""Devices and precision: CUDA only after a check, no pinned memory on MPS, current AMP."""

import ast
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import dotted, is_constant, keyword, name_of
from scaffold.check.registry import check
from scaffold.check.source import Source


def cuda_literal(node: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value == "cuda" or node.value.startswith("cuda:"))
    )


def hard_coded_cuda(call: ast.Call) -> bool:
    """`.to("cuda")`, `.cuda()`, `torch.device("cuda")`, `device="cuda"`."""
    name = name_of(call)
    if (
        name == "cuda"
        and isinstance(call.func, ast.Attribute)
        and dotted(call.func) != "torch.cuda"
    ):
        return True
    if name in {"to", "device"} and call.args and cuda_literal(call.args[0]):
        return True
    return cuda_literal(keyword(call, "device"))


@check(
    "cuda-without-check",
    "R-DEVICE",
    "tensors or models moved to 'cuda' with no torch.cuda.is_available() check",
)
def cuda_without_check(source: Source) -> Iterator[Finding]:
    if any(name_of(c) == "is_available" or name_of(c) == "device_count" for c in source.calls):
        return
    first = next((c for c in source.calls if hard_coded_cuda(c)), None)
    if first is not None:
        yield source.finding(
            first,
            "cuda-without-check",
            "this assumes CUDA exists: on a machine without it the script crashes",
            "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu'), print "
            "it, and use .to(device)",
        )


@check(
    "pin-memory-on-mps",
    "R-PIN-MEMORY",
    "pin_memory=True for an Apple MPS device, which does not support it",
)
def pin_memory_on_mps(source: Source) -> Iterator[Finding]:
    mentions_cuda = any(cuda_literal(ast.Constant(s)) for s in source.strings) or any(
        dotted(a).startswith("torch.cuda") for a in source.attributes
    )
    on_mps = source.project.hardware == "mps" or (
        source.project.hardware is None and "mps" in source.strings and not mentions_cuda
    )
    if not on_mps:
        return
    for call in source.calls:
        for name in ("pin_memory", "dataloader_pin_memory"):
            value = keyword(call, name)
            if is_constant(value, True):
                yield source.finding(
                    value,
                    "pin-memory-on-mps",
                    "pin_memory=True on MPS: PyTorch warns and pins nothing",
                    f"{name}=False on MPS and CPU (True only when the device is CUDA)",
                )


@check(
    "deprecated-cuda-amp",
    "R-AMP",
    "the deprecated torch.cuda.amp API",
)
def deprecated_cuda_amp(source: Source) -> Iterator[Finding]:
    for node in source.imports:
        modules = [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            modules = [f"{module}.{a.name}" for a in node.names] + [module]
        if any(m == "torch.cuda.amp" or m.startswith("torch.cuda.amp.") for m in modules):
            yield deprecated(source, node)
    for attribute in source.attributes:
        if dotted(attribute) == "torch.cuda.amp" and not isinstance(
            source.parents.get(attribute), ast.Attribute
        ):
            yield deprecated(source, attribute)
        elif dotted(attribute).startswith("torch.cuda.amp.") and dotted(attribute).count(".") == 3:
            yield deprecated(source, attribute)


def deprecated(source: Source, node: ast.AST) -> Finding:
    return source.finding(
        node,
        "deprecated-cuda-amp",
        "torch.cuda.amp is deprecated (PyTorch warns on every call)",
        "torch.autocast('cuda', dtype=torch.bfloat16) and, for fp16 only, "
        "torch.amp.GradScaler('cuda')",
    )
