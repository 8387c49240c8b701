"""Logging and accumulating metrics: plain numbers only, and W&B started before it logs."""

import ast
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import (
    ancestors,
    calls_in,
    dotted,
    enclosing_loops,
    grad_disabled,
    graph_names,
    holds_graph_at,
    in_scope,
    name_of,
    receiver,
)
from scaffold.check.registry import check
from scaffold.check.source import Function, Source, position

METRIC_LOGGERS = {"add_scalar", "add_scalars", "log_metric", "log_metrics"}


def scopes(source: Source) -> Iterator[ast.AST]:
    yield source.tree
    for functions in source.functions.values():
        yield from functions


def as_operand(node: ast.AST) -> str:
    """The expression's source, parenthesized where `.item()` would bind to a part of it."""
    text = ast.unparse(node)
    simple = isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Call)
    return text if simple else f"({text})"


def in_training_loop(source: Source, node: ast.AST) -> bool:
    """The innermost loop around `node` backpropagates: what it keeps outlives each step.
    (A loop over loss terms, to be summed and backpropagated after it, is not one.)"""
    loop = next(enclosing_loops(source, node), None)
    return loop is not None and any(name_of(c) == "backward" for c in calls_in(source, loop))


@check(
    "tensor-kept-in-list",
    "R-ITEM-LOGGING",
    "a loss tensor is appended to a list, keeping its autograd graph alive",
)
def tensor_kept_in_list(source: Source) -> Iterator[Finding]:
    for scope in scopes(source):
        history = None
        for call in calls_in(source, scope):
            if name_of(call) not in {"append", "extend"} or len(call.args) != 1:
                continue
            if grad_disabled(source, call) or not in_training_loop(source, call):
                continue
            history = history if history is not None else graph_names(source, scope)
            if holds_graph_at(history, call.args[0]):
                value = as_operand(call.args[0])
                yield source.finding(
                    call,
                    "tensor-kept-in-list",
                    f"{value} still holds its autograd graph: every step's graph stays in "
                    f"{ast.unparse(call.func.value)} (a memory leak)",
                    f"append {value}.item() (or {value}.detach() to keep a tensor)",
                )


@check(
    "tensor-accumulated",
    "R-ITEM-LOGGING",
    "a running total adds up loss tensors, chaining every step's graph together",
)
def tensor_accumulated(source: Source) -> Iterator[Finding]:
    for scope in scopes(source):
        augmented = [
            n
            for n in source.assigns
            if isinstance(n, ast.AugAssign)
            and isinstance(n.op, ast.Add)
            and isinstance(n.target, ast.Name)
            and in_scope(source, n, scope)
            and in_training_loop(source, n)
            and not grad_disabled(source, n)
        ]
        if not augmented:
            continue
        history = graph_names(source, scope)
        backpropagated = {receiver(c) for c in calls_in(source, scope) if name_of(c) == "backward"}
        for node in augmented:
            total = node.target.id
            if total in backpropagated or holds_graph_at(history, node.target):
                continue  # building up a loss to backpropagate is what += is for there
            if holds_graph_at(history, node.value):
                value = as_operand(node.value)
                yield source.finding(
                    node,
                    "tensor-accumulated",
                    f"{total} adds up {value} with its autograd graph: the graphs of all "
                    "steps stay in memory",
                    f"{total} += {value}.item() (or .detach() to stay on the device)",
                )


@check(
    "tensor-logged",
    "R-ITEM-LOGGING",
    "a loss tensor is passed to a metrics logger instead of a Python number",
)
def tensor_logged(source: Source) -> Iterator[Finding]:
    for scope in scopes(source):
        history = None
        for call in calls_in(source, scope):
            if not is_metrics_log(call) or grad_disabled(source, call):
                continue
            history = history if history is not None else graph_names(source, scope)
            for value in logged_values(call):
                if holds_graph_at(history, value):
                    text = as_operand(value)
                    yield source.finding(
                        value,
                        "tensor-logged",
                        f"{text} is logged as a tensor with its autograd graph",
                        f"log {text}.item() (at the logging interval, not every step)",
                    )


def is_metrics_log(call: ast.Call) -> bool:
    name = dotted(call.func)
    return (
        name in {"wandb.log", "mlflow.log_metric", "mlflow.log_metrics"}
        or (name_of(call) in METRIC_LOGGERS)
        or (name_of(call) == "log" and receiver(call).split(".")[-1] in {"run", "wandb_run"})
    )


def logged_values(call: ast.Call) -> Iterator[ast.expr]:
    for arg in [*call.args, *(k.value for k in call.keywords if k.arg)]:
        if isinstance(arg, ast.Dict):
            yield from (v for v in arg.values if v is not None)
        else:
            yield arg


def started_elsewhere(source: Source) -> bool:
    """wandb.init is called somewhere in the project, or by a library that starts the run
    (a Trainer with report_to="wandb", accelerate's init_trackers)."""
    return any(
        name == "wandb.init" or name.endswith(("Trainer", "init_trackers"))
        for name in source.project.calls
    )


def checks_for_a_run(source: Source, function: ast.AST) -> bool:
    """`if wandb.run is not None: wandb.log(...)`: the code knows a run may not exist."""
    return any(
        dotted(a) == "wandb.run" and in_scope(source, a, function) for a in source.attributes
    )


@check(
    "wandb-log-before-init",
    "R-LOG-AFTER-STEP",
    "wandb.log() is called before (or without) wandb.init()",
)
def wandb_log_before_init(source: Source) -> Iterator[Finding]:
    logs = [c for c in source.calls if dotted(c.func) == "wandb.log"]
    if not logs:
        return
    inits = [c for c in source.calls if dotted(c.func) == "wandb.init"]
    for call in logs:
        function = next(
            (a for a in ancestors(source, call) if isinstance(a, Function)), source.tree
        )
        local_inits = [c for c in inits if in_scope(source, c, function)]
        late = local_inits and all(position(c) > position(call) for c in local_inits)
        if late or not (started_elsewhere(source) or checks_for_a_run(source, function)):
            yield source.finding(
                call,
                "wandb-log-before-init",
                "wandb.log() runs before wandb.init(): W&B raises (or logs nowhere)",
                "call wandb.init(project=..., config=...) once at start, before any log",
            )
