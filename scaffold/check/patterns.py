"""Recognising training-code idioms in a syntax tree: optimizer steps, backward passes,
gradient-free contexts, loss tensors. Names and shapes only: nothing is imported or run."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.source import Function, Loop, Source, end_position, position

OPTIMIZER_NAME = re.compile(r"(^|_)(opt|optim|optimizer|optimiser)(_|\d|$)|optimizer", re.I)
SCHEDULER_NAME = re.compile(r"sched", re.I)
SCALER_NAME = re.compile(r"scaler", re.I)
LOSS_FUNCTIONS = re.compile(r"loss|criterion|cross_entropy|nll|kl_div|binary_cross_entropy", re.I)
DETACHING = {"item", "detach", "tolist", "numpy", "float", "int", "bool", "len"}
NO_GRAD = {"no_grad", "inference_mode"}


def dotted(node: ast.AST | None) -> str:
    """`torch.cuda.amp.autocast` for that attribute chain; '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call) and parts:  # torch.optim.AdamW(...).step -> AdamW().step
        inner = dotted(node.func)
        return ".".join([inner + "()", *reversed(parts)]) if inner else ""
    return ""


def name_of(call: ast.Call) -> str:
    """The called name's last part: `step` for `self.optimizer.step()`."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def receiver(call: ast.Call) -> str:
    """`self.optimizer` for `self.optimizer.step()`; '' for a plain function call."""
    return dotted(call.func.value) if isinstance(call.func, ast.Attribute) else ""


def last(dotted_name: str) -> str:
    return dotted_name.rsplit(".", 1)[-1]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unpacks_kwargs(call: ast.Call) -> bool:
    """`f(**config)`: any keyword may come from there."""
    return any(k.arg is None for k in call.keywords)


def is_constant(node: ast.AST | None, *values: object) -> bool:
    return (
        isinstance(node, ast.Constant)
        and type(node.value) in {type(v) for v in values}
        and node.value in values
    )


def ancestors(source: Source, node: ast.AST) -> Iterator[ast.AST]:
    while node in source.parents:
        node = source.parents[node]
        yield node


def enclosing_function(source: Source, node: ast.AST) -> Function | None:
    return next((a for a in ancestors(source, node) if isinstance(a, Function)), None)


def scope_of(source: Source, node: ast.AST) -> ast.AST:
    """The function (or module) whose body `node` runs in."""
    return enclosing_function(source, node) or source.tree


def owner_of(source: Source, scope: ast.AST) -> ast.AST:
    """The function (or module) a scope's statements run in: itself for a function."""
    if scope is source.tree or isinstance(scope, Function | ast.Lambda | ast.ClassDef):
        return scope
    return source.owners.get(scope, source.tree)


def in_scope(source: Source, node: ast.AST, scope: ast.AST) -> bool:
    """`node` is inside `scope` and not inside a function defined in it."""
    if source.owners.get(node, source.tree) is not owner_of(source, scope):
        return False
    return owner_of(source, scope) is scope or (
        position(scope) <= position(node) <= end_position(scope)
    )


def calls_in(source: Source, scope: ast.AST) -> list[ast.Call]:
    """Calls that run as part of `scope` itself (not in functions defined inside it), in order."""
    key = ("calls_in", id(scope))
    if key not in source.memo:
        owner = owner_of(source, scope)
        calls = source.calls_by_owner.get(owner, [])
        if owner is not scope:
            start, end = position(scope), end_position(scope)
            calls = [c for c in calls if start <= position(c) <= end]
        source.memo[key] = calls
    return source.memo[key]


def enclosing_loops(source: Source, node: ast.AST) -> Iterator[Loop]:
    """Loops around `node`, innermost first, up to the function it is in."""
    for a in ancestors(source, node):
        if isinstance(a, Function | ast.Lambda | ast.ClassDef):
            return
        if isinstance(a, Loop):
            yield a


def is_no_grad_call(node: ast.AST) -> bool:
    """`torch.no_grad()`, `torch.inference_mode()`, `torch.set_grad_enabled(False)`."""
    if not isinstance(node, ast.Call | ast.Attribute | ast.Name):
        return False
    call = node if isinstance(node, ast.Call) else None
    name = last(dotted(node.func if call else node))
    if name in NO_GRAD:
        return True
    return (
        name == "set_grad_enabled"
        and call is not None
        and is_constant(call.args[0] if call.args else None, False)
    )


def grad_disabled(source: Source, node: ast.AST) -> bool:
    """`node` runs under no_grad / inference_mode (a `with` block or a decorator)."""
    for a in ancestors(source, node):
        if isinstance(a, ast.With | ast.AsyncWith):
            if any(is_no_grad_call(item.context_expr) for item in a.items):
                return True
        if isinstance(a, Function):
            if any(is_no_grad_call(d) for d in a.decorator_list):
                return True
            return called_only_without_grad(source, a)
    return False


def called_only_without_grad(source: Source, function: Function) -> bool:
    """Every call of this function in the file runs under no_grad (and there is one)."""
    key = ("called_only_without_grad", id(function))
    if key not in source.memo:
        source.memo[key] = _called_only_without_grad(source, function)
    return source.memo[key]


def _called_only_without_grad(source: Source, function: Function) -> bool:
    sites = [c for c in source.calls if name_of(c) == function.name]
    return bool(sites) and all(
        any(
            isinstance(a, ast.With | ast.AsyncWith)
            and any(is_no_grad_call(i.context_expr) for i in a.items)
            for a in ancestors(source, c)
        )
        for c in sites
    )


# -- the training step's parts ------------------------------------------------------------


def optimizer_names(source: Source) -> set[str]:
    """Names bound to an optimizer built in this file: `opt = torch.optim.AdamW(...)`."""
    if ("optimizer_names",) not in source.memo:
        source.memo[("optimizer_names",)] = _optimizer_names(source)
    return source.memo[("optimizer_names",)]


def _optimizer_names(source: Source) -> set[str]:
    names = set()
    for node in source.assigns:
        value = node.value
        if isinstance(value, ast.Call) and (
            ".optim." in f".{dotted(value.func)}."
            or re.search(r"Adam|SGD|Lion|Adafactor", name_of(value))
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(dotted(t) for t in targets)
    return names - {""}


def is_optimizer(source: Source, name: str) -> bool:
    return (
        bool(name)
        and (bool(OPTIMIZER_NAME.search(last(name))) or name in optimizer_names(source))
        and not SCHEDULER_NAME.search(last(name))
    )


def is_optimizer_step(source: Source, call: ast.Call) -> bool:
    if name_of(call) != "step":
        return False
    owner = receiver(call)
    if SCALER_NAME.search(last(owner)):  # scaler.step(optimizer)
        return True
    return is_optimizer(source, owner)


def is_scheduler_step(call: ast.Call) -> bool:
    return name_of(call) == "step" and bool(SCHEDULER_NAME.search(last(receiver(call))))


def is_backward(call: ast.Call) -> bool:
    return name_of(call) == "backward"


def is_zero_grad(call: ast.Call) -> bool:
    return name_of(call) == "zero_grad"


def is_clip(call: ast.Call) -> bool:
    return name_of(call) in {"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm"}


def forward_calls(source: Source, scope: ast.AST, model: str) -> list[ast.Call]:
    """Calls of `model(...)` / `model.forward(...)` that run in `scope`."""
    return [
        c
        for c in calls_in(source, scope)
        if dotted(c.func) == model or (name_of(c) == "forward" and receiver(c) == model)
    ]


# -- tensors that hold an autograd graph ----------------------------------------------------


def holds_graph(node: ast.AST | None, graph_names: set[str]) -> bool:
    """An expression whose value is (most likely) a loss tensor with its graph attached."""
    if isinstance(node, ast.Name):
        return node.id in graph_names
    if isinstance(node, ast.Attribute):
        return node.attr == "loss" or dotted(node) in graph_names
    if isinstance(node, ast.BinOp):
        return holds_graph(node.left, graph_names) or holds_graph(node.right, graph_names)
    if isinstance(node, ast.UnaryOp):
        return holds_graph(node.operand, graph_names)
    if isinstance(node, ast.Subscript):
        return holds_graph(node.value, graph_names)
    if isinstance(node, ast.Call):
        name = name_of(node)
        if name in DETACHING or name == "data":
            return False
        if isinstance(node.func, ast.Attribute) and holds_graph(node.func.value, graph_names):
            return True  # loss.mean(), loss.cpu(), loss.float() keep the graph
        return (
            isinstance(node.func, ast.Name | ast.Attribute)
            and bool(LOSS_FUNCTIONS.search(name))
            and not name.startswith(("log_", "compute_metrics"))
        )
    return False


def returns_plain_values(function: Function) -> bool:
    """A function of this file that runs without gradients or returns Python numbers."""
    if any(is_no_grad_call(d) for d in function.decorator_list):
        return True
    returns = [n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value]
    return bool(returns) and all(
        isinstance(r, ast.Call) and name_of(r) in DETACHING for r in returns
    )


MODEL_NAME = re.compile(r"((raw|ddp|base|student|teacher|ref)_)?(model|net|network|policy)", re.I)


def is_model_call(call: ast.AST) -> bool:
    """`model(x)`, `self.net(x)`: a call of something named like a network."""
    return isinstance(call, ast.Call) and bool(MODEL_NAME.fullmatch(last(dotted(call.func))))


def graph_names(source: Source, scope: ast.AST) -> dict[str, list[tuple[int, bool]]]:
    """For each name assigned in `scope`: (line, holds a graph after it) per assignment."""
    history: dict[str, list[tuple[int, bool]]] = {}
    for node in source.assigns:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        if not in_scope(source, node, scope):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        tracked = not grad_disabled(source, node) and not plain_local_call(source, node.value)
        known = {n for n, h in history.items() if h[-1][1]}
        for target in targets:
            if isinstance(target, ast.Tuple):  # logits, loss = model(x, y)
                for element in target.elts:
                    name = dotted(element)
                    graph = (
                        tracked
                        and "loss" in last(name).lower()
                        and (is_model_call(node.value) or holds_graph(node.value, known))
                    )
                    history.setdefault(name, []).append((node.lineno, graph))
                continue
            name = dotted(target)
            graph = tracked and (
                holds_graph(node.value, known)
                or ("loss" in last(name).lower() and is_model_call(node.value))
            )
            history.setdefault(name, []).append((node.lineno, graph))
    history.pop("", None)
    return history


def plain_local_call(source: Source, value: ast.AST) -> bool:
    """`losses = estimate_loss()` where estimate_loss is a no_grad function of this file."""
    if not isinstance(value, ast.Call):
        return False
    functions = source.functions.get(name_of(value), [])
    return bool(functions) and all(returns_plain_values(f) for f in functions)


def holds_graph_at(history: dict[str, list[tuple[int, bool]]], node: ast.AST) -> bool:
    """Does the expression hold a graph, given the assignments before its line?"""
    line = getattr(node, "lineno", 0)
    names = {
        name
        for name, events in history.items()
        if [graph for at, graph in events if at < line][-1:] == [True]
    }
    return holds_graph(node, names)
