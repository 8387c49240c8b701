"""Train and eval modes, and evaluation with gradients off."""

import ast
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import (
    calls_in,
    dotted,
    enclosing_loops,
    forward_calls,
    grad_disabled,
    is_backward,
    is_constant,
    is_optimizer_step,
    name_of,
    scope_of,
)
from scaffold.check.registry import check
from scaffold.check.source import Function, Loop, Source, position

ModeEvent = tuple[str, str, ast.Call]  # ("eval" | "train", model, the call that sets it)


def mode_events(source: Source, scope: ast.AST, depth: int = 2) -> list[ModeEvent]:
    """model.eval() / model.train() calls that run in `scope`, in order, including those
    made by functions of this file it calls (`evaluate(model, ...)`)."""
    events: list[ModeEvent] = []
    for call in calls_in(source, scope):
        mode = mode_set_by(call)
        if mode:
            events.append((mode, model_of(call.func.value), call))
        elif depth:
            for function in source.functions.get(name_of(call), []):
                for model, mode in final_modes(source, function, depth - 1).items():
                    events.append((mode, bound_argument(call, function, model), call))
    return events


def mode_set_by(call: ast.Call) -> str | None:
    if not isinstance(call.func, ast.Attribute) or not model_of(call.func.value):
        return None
    if call.func.attr == "eval" and not call.args:
        return "eval"
    if call.func.attr == "train":
        if not call.args or is_constant(call.args[0], True):
            return "train"
        if is_constant(call.args[0], False):
            return "eval"
    return None


def model_of(node: ast.AST) -> str:
    """`model` for `model`, `model.to(device)`, `model.cpu()`: moves return the model."""
    while (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"to", "cpu", "cuda", "float", "half", "bfloat16", "train", "eval"}
    ):
        node = node.func.value
    return dotted(node)


def final_modes(source: Source, function: Function, depth: int) -> dict[str, str]:
    """The mode each model is left in when `function` returns."""
    return {model: mode for mode, model, _ in mode_events(source, function, depth)}


def bound_argument(call: ast.Call, function: Function, model: str) -> str:
    """The caller's name for the function's parameter `model` (`self.x` stays as it is)."""
    head, _, rest = model.partition(".")
    params = [a.arg for a in function.args.posonlyargs + function.args.args]
    if params and params[0] in {"self", "cls"} and isinstance(call.func, ast.Attribute):
        params = params[1:]
    value = None
    if head in params and params.index(head) < len(call.args):
        value = call.args[params.index(head)]
    value = next((k.value for k in call.keywords if k.arg == head), value)
    if value is None:
        return model
    return dotted(value) + (f".{rest}" if rest else "")


def backward_loops(source: Source) -> dict[Loop, ast.Call]:
    """The innermost loop around each backward pass -> its first backward call."""
    found: dict[Loop, ast.Call] = {}
    for call in source.calls:
        if is_backward(call):
            loop = next(enclosing_loops(source, call), None)
            if loop is not None:
                found.setdefault(loop, call)
    return found


@check(
    "training-in-eval-mode",
    "R-TRAIN-EVAL-MODE",
    "a model trains after model.eval() with no model.train() in between",
)
def training_in_eval_mode(source: Source) -> Iterator[Finding]:
    for loop, first_backward in backward_loops(source).items():
        scope = scope_of(source, loop)
        events = mode_events(source, scope)
        models = {model for mode, model, _ in events if mode == "eval"}
        for model in sorted(models):
            if not any(not grad_disabled(source, c) for c in forward_calls(source, loop, model)):
                continue
            mine = [(mode, call) for mode, m, call in events if m == model]
            inside = [(m, c) for m, c in mine if within(c, loop)]
            before = [(m, c) for m, c in mine if position(c) < position(loop)]
            later = mode_on_later_runs(loop, list(enclosing_loops(source, loop)), mine)
            if not inside and later and later[0] == "eval" and later not in before:
                yield source.finding(
                    later[1],
                    "training-in-eval-mode",
                    f"{model} is left in eval mode here and the next training step runs in it",
                    f"call {model}.train() after evaluating",
                )
            elif not inside and before and before[-1][0] == "eval":
                yield source.finding(
                    first_backward,
                    "training-in-eval-mode",
                    f"{model} is in eval mode here (model.eval() on line "
                    f"{before[-1][1].lineno}): dropout and batch-norm behave as at test time",
                    f"call {model}.train() before the training loop",
                )
            elif inside and inside[-1][0] == "eval":
                trained_first = any(
                    m == "train" and position(c) < position(first_backward) for m, c in inside
                )
                if not trained_first:
                    yield source.finding(
                        inside[-1][1],
                        "training-in-eval-mode",
                        f"{model} is left in eval mode here and the next training step "
                        "runs in it",
                        f"call {model}.train() after evaluating",
                    )


def mode_on_later_runs(
    loop: Loop, outer: list[Loop], events: list[tuple[str, ast.Call]]
) -> tuple[str, ast.Call] | None:
    """The mode set last before `loop` runs again: inside the innermost loop around it that
    sets a mode, the last one before `loop` in its body or else the last one after it."""
    for around in outer:
        mine = [(m, c) for m, c in events if within(c, around) and not within(c, loop)]
        ahead = [(m, c) for m, c in mine if position(c) < position(loop)]
        if ahead:
            return ahead[-1]
        if mine:
            return mine[-1]
    return None


def within(node: ast.AST, outer: ast.AST) -> bool:
    return position(outer) <= position(node) and node.lineno <= (outer.end_lineno or 0)


@check(
    "eval-with-grad",
    "R-NO-GRAD-EVAL",
    "an evaluation loop runs the model with gradients on (no no_grad/inference_mode)",
)
def eval_with_grad(source: Source) -> Iterator[Finding]:
    for loop in source.loops:
        body = calls_in(source, loop)
        if any(is_backward(c) or is_optimizer_step(source, c) for c in body):
            continue
        if grad_disabled(source, loop):
            continue
        scope = scope_of(source, loop)
        if any(name_of(c) == "set_grad_enabled" for c in calls_in(source, scope)):
            continue
        events = mode_events(source, scope)
        for model in sorted({m for mode, m, _ in events if mode == "eval"}):
            calls = [c for c in forward_calls(source, loop, model) if not grad_disabled(source, c)]
            if not calls:
                continue
            before = [
                mode for mode, m, c in events if m == model and position(c) < position(calls[0])
            ]
            if before and before[-1] == "eval":
                yield source.finding(
                    loop,
                    "eval-with-grad",
                    f"{model} is evaluated with gradients on: every batch builds an autograd "
                    "graph it never uses (memory and time)",
                    "wrap the loop in `with torch.no_grad():` (or torch.inference_mode()), or "
                    "decorate the function with @torch.no_grad()",
                )
                break
