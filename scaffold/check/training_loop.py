"""The optimizer step inside a training loop: zeroing, ordering, accumulation, schedules."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import (
    calls_in,
    dotted,
    enclosing_loops,
    holds_graph,
    is_backward,
    is_clip,
    is_model_call,
    is_optimizer_step,
    is_scheduler_step,
    is_zero_grad,
    name_of,
    receiver,
)
from scaffold.check.registry import check
from scaffold.check.source import Loop, Source, position

ACCUMULATION = re.compile(r"accum", re.I)
CANONICAL = "zbcs"  # zero_grad, backward, clip, step: one optimizer step's parts, in order


def training_loops(source: Source) -> dict[Loop, list[tuple[str, ast.Call]]]:
    """Each loop that holds an optimizer step and a backward pass -> its step's parts, in
    source order. The loop is the innermost one around the step that also backpropagates."""
    loops: dict[Loop, list[tuple[str, ast.Call]]] = {}
    for call in source.calls:
        if not is_optimizer_step(source, call):
            continue
        for loop in enclosing_loops(source, call):
            if loop in loops:
                break
            events = step_parts(source, loop)
            if any(dotted(c.func) == "dist_autograd.backward" for _, c in events):
                break  # distributed autograd: each context holds its own gradients
            if any(kind == "b" for kind, _ in events):
                loops[loop] = events
                break
    return loops


def step_parts(source: Source, loop: Loop) -> list[tuple[str, ast.Call]]:
    parts = []
    for call in calls_in(source, loop):
        if is_zero_grad(call) or zeroes_grads_in_helper(source, call):
            parts.append(("z", call))
        elif is_backward(call):
            parts.append(("b", call))
        elif is_clip(call):
            parts.append(("c", call))
        elif is_optimizer_step(source, call):
            parts.append(("s", call))
    return parts


def zeroes_grads_in_helper(source: Source, call: ast.Call) -> bool:
    """A call of a function defined in this file that zeroes gradients itself."""
    for function in source.functions.get(name_of(call), []):
        if any(is_zero_grad(c) for c in calls_in(source, function)):
            return True
    return False


def first_of_each(parts: list[tuple[str, ast.Call]]) -> list[tuple[str, ast.Call]]:
    seen: dict[str, ast.Call] = {}
    for kind, call in parts:
        seen.setdefault(kind, call)
    return sorted(seen.items(), key=lambda item: position(item[1]))


def cyclic_order(kinds: str) -> str:
    """The loop repeats: rotate the parts so the cycle starts where the canonical one does."""
    start = min(range(len(kinds)), key=lambda i: CANONICAL.index(kinds[i]))
    return kinds[start:] + kinds[:start]


@check(
    "missing-zero-grad",
    "R-STEP-ORDER",
    "a loop calls backward() and optimizer.step() but never zero_grad()",
)
def missing_zero_grad(source: Source) -> Iterator[Finding]:
    for parts in training_loops(source).values():
        if not any(kind == "z" for kind, _ in parts):
            step = next(call for kind, call in parts if kind == "s")
            yield source.finding(
                step,
                "missing-zero-grad",
                "gradients are never zeroed in this loop: each step adds the new gradients "
                "to all the old ones",
                f"call {optimizer_of(step)}.zero_grad(set_to_none=True) once per optimizer "
                "step, before the forward pass",
            )


def optimizer_of(step: ast.Call) -> str:
    owner = receiver(step)
    if name_of(step) == "step" and step.args and "scaler" in owner.lower():
        return dotted(step.args[0]) or "optimizer"
    return owner or "optimizer"


@check(
    "step-order",
    "R-STEP-ORDER",
    "zero_grad(), backward() and step() run out of order in a training loop",
)
def step_order(source: Source) -> Iterator[Finding]:
    for parts in training_loops(source).values():
        firsts = [(k, c) for k, c in first_of_each(parts) if k != "c"]
        kinds = "".join(k for k, _ in firsts)
        if len(kinds) == 3 and cyclic_order(kinds) != "zbs":
            # z s b: the step comes before backward; s b z and b z s: zero_grad wipes the
            # gradients between backward and the step.
            culprit = dict(firsts)["s" if kinds == "zsb" else "z"]
            yield source.finding(
                culprit,
                "step-order",
                f"this loop runs {' -> '.join(label(k) for k in kinds)}: the optimizer "
                "steps on gradients that were zeroed or not yet computed",
                "order each step zero_grad() -> forward -> backward() -> clip -> step()",
            )


@check(
    "clip-after-step",
    "R-GRAD-CLIP",
    "gradients are clipped after optimizer.step(), when clipping no longer changes the update",
)
def clip_after_step(source: Source) -> Iterator[Finding]:
    for parts in training_loops(source).values():
        firsts = first_of_each(parts)
        kinds = "".join(k for k, _ in firsts)
        if "c" in kinds and "b" in kinds and "s" in kinds:
            order = cyclic_order(kinds.replace("z", ""))
            if order != "bcs":
                yield source.finding(
                    dict(firsts)["c"],
                    "clip-after-step",
                    "gradients are clipped after the optimizer step has used them",
                    "clip after backward() and before optimizer.step() (after "
                    "scaler.unscale_(optimizer) with a GradScaler)",
                )


def label(kind: str) -> str:
    return {"z": "zero_grad", "b": "backward", "c": "clip", "s": "step"}[kind]


@check(
    "scheduler-before-optimizer",
    "R-STEP-ORDER",
    "scheduler.step() runs before the optimizer.step() it schedules",
)
def scheduler_before_optimizer(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if not is_scheduler_step(call):
            continue
        loop = next(enclosing_loops(source, call), None)
        if loop is None:
            continue
        body = calls_in(source, loop)
        first_step = next((c for c in body if is_optimizer_step(source, c)), None)
        first_schedule = next(c for c in body if is_scheduler_step(c))
        if (
            first_step is not None
            and first_schedule is call
            and position(call) < position(first_step)
        ):
            yield source.finding(
                call,
                "scheduler-before-optimizer",
                f"{receiver(call)}.step() runs before {optimizer_of(first_step)}.step(): "
                "the first value of the schedule is skipped (PyTorch warns)",
                f"call {receiver(call)}.step() after {optimizer_of(first_step)}.step() "
                "(per batch or per epoch, as the scheduler expects)",
            )


@check(
    "accumulation-steps-every-batch",
    "R-GRAD-ACCUM",
    "the loss is divided for gradient accumulation but the optimizer steps every micro-batch",
)
def accumulation_steps_every_batch(source: Source) -> Iterator[Finding]:
    for loop in source.loops:
        if not any(divides_by_accumulation(n) for n in own_nodes(source, loop)):
            continue
        for call in calls_in(source, loop):
            if (
                is_optimizer_step(source, call)
                and next(enclosing_loops(source, call)) is loop
                and not conditional(source, call, loop)
            ):
                yield source.finding(
                    call,
                    "accumulation-steps-every-batch",
                    "the loss is scaled for gradient accumulation, but the optimizer "
                    "steps on every micro-batch",
                    "step (and zero_grad) only when (i + 1) % accumulation_steps == 0, or "
                    "run an inner loop over the micro-batches",
                )


def own_nodes(source: Source, loop: Loop) -> Iterator[ast.AST]:
    """Divisions in the loop's body that are not inside a nested loop or function."""
    for node in ast.walk(loop):
        if isinstance(node, ast.BinOp | ast.AugAssign):
            if next(enclosing_loops(source, node), None) is loop:
                yield node


def divides_by_accumulation(node: ast.AST) -> bool:
    """`loss / accumulation_steps` (or `loss /= ...`): a loss scaled for accumulation."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        loss, divisor = node.left, node.right
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div):
        loss, divisor = node.target, node.value
    else:
        return False
    return loss_like(loss) and bool(ACCUMULATION.search(ast.unparse(divisor)))


def loss_like(node: ast.AST) -> bool:
    """`loss`, `out.loss`, `criterion(...)`, `model(batch)`: a loss with its graph."""
    named = isinstance(node, ast.Name | ast.Attribute) and "loss" in dotted(node).lower()
    return named or holds_graph(node, set()) or is_model_call(node)


def conditional(source: Source, node: ast.AST, loop: Loop) -> bool:
    """`node` runs only on some iterations: inside an if/try in the loop body, or after a
    `continue` guarded by an if."""
    for a in ancestors_until(source, node, loop):
        if isinstance(a, ast.If | ast.Try | ast.IfExp | ast.Match):
            return True
    return any(
        isinstance(stmt, ast.If)
        and any(isinstance(s, ast.Continue) for s in ast.walk(stmt))
        and stmt.lineno < node.lineno
        for stmt in loop.body
    )


def ancestors_until(source: Source, node: ast.AST, stop: ast.AST) -> Iterator[ast.AST]:
    while node in source.parents and source.parents[node] is not stop:
        node = source.parents[node]
        yield node


@check(
    "lr-never-applied",
    "R-LR-SCHEDULE",
    "a learning rate is computed in the training loop but never written to param_groups",
)
def lr_never_applied(source: Source) -> Iterator[Finding]:
    writes_lr = any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Subscript) and _is_lr_key(t.slice) for t in node.targets)
        for node in source.assigns
    ) or any(name_of(c) in {"set_lr", "update_lr", "adjust_learning_rate"} for c in source.calls)
    if writes_lr:
        return
    for loop in training_loops(source):
        if any(is_scheduler_step(c) for c in calls_in(source, loop)):
            continue
        for node in source.assigns:
            if not (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and in_scope_of_loop(source, node, loop)
            ):
                continue
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(re.fullmatch(r"(\w+_)?(lr|learning_rate)", n) for n in names):
                if not passed_to_a_call(source, names[0], loop):
                    yield source.finding(
                        node,
                        "lr-never-applied",
                        f"{names[0]} is computed each step but never reaches the optimizer: "
                        "training runs at the initial learning rate",
                        f"for group in optimizer.param_groups: group['lr'] = {names[0]}",
                    )


def _is_lr_key(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "lr"


def in_scope_of_loop(source: Source, node: ast.AST, loop: Loop) -> bool:
    return any(a is loop for a in enclosing_loops(source, node))


def passed_to_a_call(source: Source, name: str, loop: Loop) -> bool:
    """`set_lr(optimizer, lr)`, `scheduler.step(lr)`: the value goes somewhere that may
    apply it (dicts and f-strings for logging do not count)."""
    for call in calls_in(source, loop):
        if name_of(call) in {"print", "log", "info", "metrics", "add_scalar"}:
            continue
        args = [*call.args, *(k.value for k in call.keywords)]
        if any(isinstance(a, ast.Name) and a.id == name for a in args):
            return True
    return False
