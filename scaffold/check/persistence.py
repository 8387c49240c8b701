"""Saving and loading: full checkpoints, safe loading, token files read in their dtype."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import (
    dotted,
    enclosing_function,
    enclosing_loops,
    is_constant,
    is_optimizer,
    keyword,
    name_of,
    receiver,
    unpacks_kwargs,
)
from scaffold.check.registry import check
from scaffold.check.source import Source

CHECKPOINT_WORDS = re.compile(r"ckpt|checkpoint", re.I)
# State dicts that are not a model's weights.
NOT_A_MODEL = re.compile(
    r"optim|sched|scaler|loader|sampler|generator|rng|tokenizer|callback|trainer|accelerator",
    re.I,
)


def state_dict_owner(node: ast.AST | None) -> str | None:
    """`model` for `model.state_dict()`; None for anything else."""
    if isinstance(node, ast.Call) and name_of(node) == "state_dict":
        return receiver(node) or None
    return None


def saved_alone(source: Source, saved: ast.AST, line: int) -> str | None:
    """The model whose weights are all `saved` holds, or None when it holds more."""
    if isinstance(saved, ast.Name):  # state = model.state_dict(); torch.save(state, ...)
        bound = [
            n.value
            for n in source.assigns
            if isinstance(n, ast.Assign)
            and n.lineno < line
            and any(isinstance(t, ast.Name) and t.id == saved.id for t in n.targets)
        ]
        saved = bound[-1] if bound else saved
    if isinstance(saved, ast.Dict):
        if any(k is None for k in saved.keys):
            return None  # {**progress, ...}: more than this check can see
        owners = [state_dict_owner(v) for v in saved.values]
        keys = " ".join(ast.unparse(k) for k in saved.keys if k is not None)
        if len(saved.values) == 1 and owners[0] and not re.search(r"optim", keys, re.I):
            return owners[0]
        return None
    owner = state_dict_owner(saved)
    if not owner or is_optimizer(source, owner) or NOT_A_MODEL.search(owner.rsplit(".", 1)[-1]):
        return None
    return owner


@check(
    "weights-only-checkpoint",
    "R-FULL-CHECKPOINT",
    "a checkpoint that saves the model's state_dict alone (no optimizer, step, RNG)",
)
def weights_only_checkpoint(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if dotted(call.func) != "torch.save" or len(call.args) < 2:
            continue
        model = saved_alone(source, call.args[0], call.lineno)
        if model is None:
            continue
        function = enclosing_function(source, call)
        is_checkpoint = (
            CHECKPOINT_WORDS.search(ast.unparse(call.args[1]))
            or next(enclosing_loops(source, call), None) is not None
            or (function is not None and CHECKPOINT_WORDS.search(function.name))
        )
        if is_checkpoint:
            yield source.finding(
                call,
                "weights-only-checkpoint",
                f"this checkpoint holds {model}'s weights only: a resumed run restarts the "
                "optimizer, schedule, step and RNG from scratch",
                "save {'model': ..., 'optimizer': optimizer.state_dict(), 'step': step, "
                "'rng': ..., 'config': cfg} (and the scheduler/scaler when there is one)",
            )


@check(
    "torch-load-unsafe",
    "R-SAFE-LOAD",
    "torch.load without weights_only=True (unpickles arbitrary objects)",
)
def torch_load_unsafe(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if dotted(call.func) != "torch.load":
            continue
        flag = keyword(call, "weights_only")
        if (flag is None and not unpacks_kwargs(call)) or is_constant(flag, False):
            yield source.finding(
                call,
                "torch-load-unsafe",
                "torch.load without weights_only=True can run code hidden in the file",
                "torch.load(path, map_location='cpu', weights_only=True); save plain "
                "tensors and Python types so it loads",
            )


@check(
    "memmap-without-dtype",
    "R-MEMMAP-DTYPE",
    "np.memmap without a dtype reads the tokens as uint8",
)
def memmap_without_dtype(source: Source) -> Iterator[Finding]:
    for call in source.calls:
        if name_of(call) != "memmap" or not dotted(call.func).startswith(("np.", "numpy.")):
            continue
        if keyword(call, "dtype") is None and len(call.args) < 2 and not unpacks_kwargs(call):
            yield source.finding(
                call,
                "memmap-without-dtype",
                "np.memmap without dtype reads bytes (uint8): every token id comes out wrong",
                "np.memmap(path, dtype=<the dtype the file was written with, e.g. np.uint16>, "
                "mode='r')",
            )
