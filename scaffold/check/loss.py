"""Language-model loss shapes: flattened logits, targets shifted exactly once."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import dotted, is_model_call, name_of, scope_of
from scaffold.check.registry import check
from scaffold.check.source import Source

LOSSES = {"cross_entropy", "nll_loss"}
SHIFTED_TARGETS = re.compile(r"y|yb|y_batch|targets?|tgt|target_ids", re.I)
LM_HINTS = re.compile(r"\bvocab_size\b|\bblock_size\b|CausalLM")  # a language model is trained here


def loss_callees(source: Source) -> set[str]:
    """Names bound to a criterion object: `criterion = nn.CrossEntropyLoss()`."""
    names = set()
    for node in source.assigns:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if name_of(node.value) in {"CrossEntropyLoss", "NLLLoss"}:
                names.update(dotted(t) for t in node.targets)
    return names - {""}


def raw_logits(source: Source, node: ast.AST) -> bool:
    """The model's output as it came out: `model(x)`, `out.logits`, or a name bound to one."""
    if isinstance(node, ast.Attribute) and node.attr == "logits":
        return True
    if is_model_call(node):
        return True
    if isinstance(node, ast.Name):
        scope = scope_of(source, node)
        bound = [
            n.value
            for n in source.assigns
            if isinstance(n, ast.Assign)
            and n.lineno < node.lineno
            and scope_of(source, n) is scope
            and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
        ]
        return bool(bound) and raw_logits(source, bound[-1])
    return False


@check(
    "unflattened-lm-logits",
    "R-LOSS-SHAPE",
    "cross-entropy on [B, T, V] language-model logits without flattening them",
)
def unflattened_lm_logits(source: Source) -> Iterator[Finding]:
    if not LM_HINTS.search(source.text):
        return
    criteria = loss_callees(source)
    for call in source.calls:
        if name_of(call) not in LOSSES and dotted(call.func) not in criteria:
            continue
        if call.args and raw_logits(source, call.args[0]):
            logits = ast.unparse(call.args[0])
            target = ast.unparse(call.args[1]) if len(call.args) > 1 else "targets"
            yield source.finding(
                call,
                "unflattened-lm-logits",
                f"{logits} is [batch, time, vocab]: cross-entropy reads the time axis as "
                "classes (an error, or a wrong loss)",
                f"{dotted(call.func)}({logits}.view(-1, {logits}.size(-1)), {target}.view(-1))",
            )


@check(
    "targets-shifted-twice",
    "R-LOSS-SHAPE",
    "targets that the data already shifted are shifted again",
)
def targets_shifted_twice(source: Source) -> Iterator[Finding]:
    for name, bound_at in shifted_pairs(source):
        scope = scope_of(source, bound_at)
        for node in ast.walk(scope):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and node.value.id == name
                and shifts_by_one(node.slice)
                and scope_of(source, node) is scope
            ):
                yield source.finding(
                    node,
                    "targets-shifted-twice",
                    f"{name} comes from the data as the inputs shifted by one; slicing it "
                    "again predicts two tokens ahead",
                    f"use {name} as it is, against the full logits",
                )


def shifted_pairs(source: Source) -> Iterator[tuple[str, ast.AST]]:
    """(targets, where bound) for `for x, y in loader` and `x, y = get_batch(...)`."""
    for node in [*source.loops, *source.assigns]:
        if isinstance(node, ast.For | ast.AsyncFor):
            target = node.target
            if isinstance(target, ast.Tuple) and len(target.elts) == 2:
                target = target.elts[1] if isinstance(target.elts[1], ast.Tuple) else target
            pair = target
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            pair = node.targets[0]
        else:
            continue
        if isinstance(pair, ast.Tuple) and len(pair.elts) == 2:
            first, second = pair.elts
            if isinstance(first, ast.Name) and isinstance(second, ast.Name):
                if SHIFTED_TARGETS.fullmatch(second.id) and first.id != second.id:
                    yield second.id, node


def shifts_by_one(index: ast.AST) -> bool:
    """`[:, 1:]` or `[..., 1:]`: drops the first position of the last axis."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    tail = parts[-1]
    return (
        isinstance(tail, ast.Slice)
        and isinstance(tail.lower, ast.Constant)
        and tail.lower.value == 1
        and tail.upper is None
        and len(parts) > 1
    )
