"""Distributed training: only where several GPUs were asked for, and then done right."""

import ast
import re
from collections.abc import Iterator

from scaffold.check.findings import Finding
from scaffold.check.patterns import dotted, is_constant, keyword, name_of, unpacks_kwargs
from scaffold.check.registry import check
from scaffold.check.source import Source

WRAPPERS = {"DistributedDataParallel", "DDP", "FullyShardedDataParallel", "FSDP", "fully_shard"}
SEEDING = {
    "torch.manual_seed",
    "torch.cuda.manual_seed",
    "torch.cuda.manual_seed_all",
    "random.seed",
    "np.random.seed",
    "numpy.random.seed",
    "set_seed",
    "transformers.set_seed",
    "seed_everything",
}
SINGLE_DEVICE = {"cpu", "mps", "cuda"}
# Calls that set up the process group (directly or through a library).
PROCESS_GROUP_MAKERS = ("init_process_group", "Accelerator", "PartialState", "init_device_mesh")
RANK = re.compile(r"rank|process_index", re.I)


def is_distributed(source: Source) -> bool:
    """The file sets up or wraps for a process group itself (not through a Trainer)."""
    return any(name_of(c) in WRAPPERS or name_of(c) == "init_process_group" for c in source.calls)


def ddp_calls(source: Source) -> list[ast.Call]:
    return [c for c in source.calls if name_of(c) in {"DistributedDataParallel", "DDP"}]


@check(
    "distributed-on-one-device",
    "R-DDP-ONLY-MULTI",
    "process groups, DDP or FSDP in a project generated for one device",
)
def distributed_on_one_device(source: Source) -> Iterator[Finding]:
    hardware = source.project.hardware
    if hardware not in SINGLE_DEVICE:
        return
    nodes: list[ast.AST] = [
        c for c in source.calls if name_of(c) in WRAPPERS | {"init_process_group"}
    ]
    nodes += [i for i in source.imports if imports_process_group_code(i)]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        yield source.finding(
            node,
            "distributed-on-one-device",
            f"distributed code in a project generated for hardware: {hardware} "
            "(.copier-answers.yml): one process needs no process group",
            "remove it and use model.to(device); for several GPUs, "
            "`scaffold update --hardware multi-gpu`",
        )


def imports_process_group_code(node: ast.Import | ast.ImportFrom) -> bool:
    """`import torch.distributed as dist`, `from torch.distributed.fsdp import ...`; not
    torch.distributed.checkpoint, which saves and loads on one device as well."""
    if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
    else:
        module = node.module or ""
        modules = [f"{module}.{a.name}" for a in node.names]
    return any(
        m.startswith("torch.distributed") and not m.startswith("torch.distributed.checkpoint")
        for m in modules
    )


@check(
    "shuffle-under-ddp",
    "R-DIST-SAMPLER",
    "DataLoader(shuffle=True) in a DDP script: every rank reads the whole dataset",
)
def shuffle_under_ddp(source: Source) -> Iterator[Finding]:
    if not is_distributed(source):
        return
    for call in source.calls:
        if name_of(call) == "DataLoader" and is_constant(keyword(call, "shuffle"), True):
            yield source.finding(
                call,
                "shuffle-under-ddp",
                "shuffle=True under DDP: each rank shuffles and reads the whole dataset, so "
                "ranks train on overlapping batches",
                "sampler=DistributedSampler(dataset, shuffle=True) and no shuffle on the "
                "DataLoader; call sampler.set_epoch(epoch) each epoch",
            )


@check(
    "loader-without-distributed-sampler",
    "R-DIST-SAMPLER",
    "a training DataLoader in a DDP script has no DistributedSampler",
)
def loader_without_distributed_sampler(source: Source) -> Iterator[Finding]:
    if not is_distributed(source):
        return
    for call in source.calls:
        if name_of(call) != "DataLoader" or unpacks_kwargs(call) or len(call.args) > 3:
            continue
        if keyword(call, "sampler") or keyword(call, "batch_sampler"):
            continue
        if is_constant(keyword(call, "shuffle"), True):
            continue  # shuffle-under-ddp reports it
        assigned = source.parents.get(call)
        target = ast.unparse(assigned.targets[0]) if isinstance(assigned, ast.Assign) else ""
        dataset = ast.unparse(call.args[0]) if call.args else ""
        if re.search(r"train", target + dataset, re.I):
            yield source.finding(
                call,
                "loader-without-distributed-sampler",
                "this training DataLoader has no DistributedSampler: every rank trains on "
                "the same batches",
                "sampler=DistributedSampler(dataset) and sampler.set_epoch(epoch) each epoch",
            )


@check(
    "sampler-without-set-epoch",
    "R-DIST-SAMPLER",
    "a shuffling DistributedSampler never gets set_epoch(): every epoch has the same order",
)
def sampler_without_set_epoch(source: Source) -> Iterator[Finding]:
    if any(name.endswith("set_epoch") for name in source.project.calls):
        return  # (perhaps in the training loop's own module)
    for call in source.calls:
        if name_of(call) == "DistributedSampler" and not is_constant(
            keyword(call, "shuffle"), False
        ):
            yield source.finding(
                call,
                "sampler-without-set-epoch",
                "this DistributedSampler never gets set_epoch(): it shuffles every epoch "
                "into the same order",
                "call sampler.set_epoch(epoch) at the start of each epoch",
            )


@check(
    "same-seed-every-rank",
    "R-RANK-SEED",
    "a DDP script seeds every rank with the same value",
)
def same_seed_every_rank(source: Source) -> Iterator[Finding]:
    if not is_distributed(source):
        return
    seeding = [c for c in source.calls if is_seeding(source, c)]
    per_rank = rank_names(source)
    if seeding and not any(
        RANK.search(ast.unparse(c))
        or any(isinstance(n, ast.Name) and n.id in per_rank for n in ast.walk(c))
        for c in seeding
    ):
        yield source.finding(
            seeding[0],
            "same-seed-every-rank",
            "every rank gets the same seed: dropout and sampling are identical on all GPUs",
            "after building the model from the common seed, seed each rank with "
            "seed + dist.get_rank()",
        )


def rank_names(source: Source) -> set[str]:
    """Names assigned from something that mentions the rank: `seed_offset = ddp_rank`."""
    names: set[str] = set()
    for node in source.assigns:
        if isinstance(node, ast.Assign) and RANK.search(ast.unparse(node.value)):
            names.update(dotted(t) for t in node.targets)
    return names - {""}


def is_seeding(source: Source, call: ast.Call) -> bool:
    name = dotted(call.func)
    if name in SEEDING or name_of(call) in {"set_seed", "seed_everything"}:
        return True
    return bool(source.functions.get(name)) and "seed" in name.lower()


@check(
    "ddp-without-device-ids",
    "R-DDP-INIT",
    "DistributedDataParallel(model) on CUDA without device_ids",
)
def ddp_without_device_ids(source: Source) -> Iterator[Finding]:
    uses_cuda = (
        "nccl" in source.strings
        or any(s == "cuda" or s.startswith("cuda:") for s in source.strings)
        or any(dotted(a).startswith("torch.cuda") for a in source.attributes)
    )
    if not uses_cuda:
        return
    for call in ddp_calls(source):
        if keyword(call, "device_ids") is None and not unpacks_kwargs(call):
            yield source.finding(
                call,
                "ddp-without-device-ids",
                "DDP without device_ids: each process may put its replica on GPU 0",
                "DDP(model, device_ids=[local_rank]) after torch.cuda.set_device(local_rank)",
            )


@check(
    "ddp-without-process-group",
    "R-DDP-INIT",
    "DistributedDataParallel is used but no file initialises a process group",
)
def ddp_without_process_group(source: Source) -> Iterator[Finding]:
    if any(name.endswith(PROCESS_GROUP_MAKERS) for name in source.project.calls):
        return
    for call in ddp_calls(source):
        yield source.finding(
            call,
            "ddp-without-process-group",
            "DDP needs a process group, and nothing initialises one",
            "dist.init_process_group('nccl') (LOCAL_RANK from torchrun) before building DDP",
        )
