"""Where a pretraining project's GPU memory goes, next to the memory plan scaffold printed for it.

    python benchmarks/pretraining_memory.py PROJECT [--gpus N] [--layers N] [--accum N]

PROJECT is a rendered cuda or multi-gpu pretraining project. The script writes random
GPT-2-vocabulary tokens as its token files and trains the project itself (its train.py and
configs/train.yaml, through torchrun for a multi-gpu project) for a few optimizer steps, with
the CUDA caching allocator's history recorded on rank 0. After the last step every rank stops,
before any checkpoint is written, and the script prints:

- the project's memory plan (scaffold.memory_plan, from the project's recorded answers);
- rank 0's peak allocated memory, its peak reserved memory per CUDA stream (FSDP's
  collectives allocate on streams of their own, whose cached blocks the compute stream cannot
  reuse) and the highest `nvidia-smi` reading of each GPU, against the plan;
- what was alive at the allocated peak, grouped by the line that allocated it.

--layers N trains (and plans) the project's preset with N layers instead, to fit one GPU;
--gpus N runs N processes (a multi-gpu project's plan is priced for N GPUs). --snapshot PATH
also keeps rank 0's allocator snapshot, for https://pytorch.org/memory_viz.
"""

import argparse
import collections
import json
import os
import pickle
import runpy
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scaffold, from this checkout
from pretraining_throughput import write_tokens  # noqa: E402

from scaffold import memory_plan  # noqa: E402

GIB = 2**30
TOP_SITES = 25


def recorded_answers(project: Path) -> dict:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return {k: v for k, v in answers.items() if not k.startswith("_")}


def plan_for(answers: dict, project: Path, gpus: int | None, layers: int | None):
    """The plan of the run: the project's answers on `gpus` GPUs, its preset at `layers`."""
    answers = dict(answers)
    if gpus:
        answers.update(gpus=gpus, nodes=1)
    if layers:
        preset = yaml.safe_load((project / "configs" / "train.yaml").read_text())["model"]["preset"]
        shape = memory_plan.shipped_config(preset)
        if shape is None:
            raise SystemExit(f"--layers: scaffold ships no shape for preset {preset!r}")
        answers["model"] = f"{preset}, {layers} layers"
        answers["model_config"] = {**shape, "n_layer": layers}
    return memory_plan.plan(answers)


def watch_nvidia_smi(peaks: dict[int, int], stop: threading.Event) -> None:
    """The highest memory.used (MiB) of each GPU, read every 0.25 s until `stop`."""
    query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
    while not stop.wait(0.25):
        try:
            out = subprocess.run(query, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return
        for line in out.strip().splitlines():
            index, used = (int(v) for v in line.split(","))
            peaks[index] = max(peaks.get(index, 0), used)


def measure(project: Path, args: argparse.Namespace, tmp: Path) -> tuple[dict, dict[int, int]]:
    data = tmp / "data"
    data.mkdir()
    write_tokens(data, 20_000_000)
    overrides = {
        "data.out_dir": data,
        "training.out_dir": tmp / "run",
        "training.max_steps": args.steps + 1,  # the run stops itself after --steps
        "training.warmup_steps": 1,
        "eval.interval": 10**6,
        "checkpoint.interval": 10**6,
        **({"training.grad_accum_steps": args.accum} if args.accum else {}),
        **dict(setting.split("=", 1) for setting in args.set),
    }
    launch = [sys.executable]
    if args.gpus:
        launch += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(args.gpus),
        ]
    cmd = [*launch, str(Path(__file__).resolve()), "--child", "train.py", "--config"]
    cmd += ["configs/train.yaml", *(f"--{k}={v}" for k, v in overrides.items())]
    report = tmp / "report.json"
    env = {
        **os.environ,
        "MEMORY_REPORT": str(report),
        "MEMORY_STEPS": str(args.steps),
        "MEMORY_LAYERS": str(args.layers or 0),
        "MEMORY_SNAPSHOT": str(args.snapshot.resolve()) if args.snapshot else "",
    }
    peaks: dict[int, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_nvidia_smi, args=(peaks, stop), daemon=True)
    watcher.start()
    try:
        subprocess.run(cmd, cwd=project, env=env, check=True)
    except subprocess.CalledProcessError as failed:
        raise SystemExit(f"the training run failed (exit {failed.returncode}); see above") from None
    finally:
        stop.set()
        watcher.join()
    return json.loads(report.read_text()), peaks


def print_report(plan: memory_plan.Plan, report: dict, smi: dict[int, int]) -> None:
    planned = plan.phases[0].total if plan.known else 0
    print(f"\nmemory plan ({plan.model}, GiB per GPU):")
    print(memory_plan.table(plan) if plan.known else "  (scaffold does not know this model)")
    print("\nmeasured on rank 0 (GiB):")

    def against_plan(name: str, value: float) -> None:
        ratio = f"  ({value / (planned / GIB):.2f}x the plan)" if planned else ""
        print(f"  {name:<36} {value:7.2f}{ratio}")

    against_plan("peak allocated (tensors)", report["max_allocated"] / GIB)
    against_plan("peak reserved (caching allocator)", report["max_reserved"] / GIB)
    for stream, reserved in report["reserved_by_stream"].items():
        name = "compute stream" if stream == "0" else f"side stream {stream}"
        print(f"    peak reserved, {name:<19} {reserved / GIB:7.2f}")
    for index, mib in sorted(smi.items()):
        against_plan(f"nvidia-smi peak, GPU {index}", mib / 1024)
    print("\nalive at the allocated peak, by allocating line:")
    for site in report["sites"]:
        print(f"  {site['bytes'] / GIB:7.2f} GiB {site['blocks']:5d} blocks  {site['where']}")


# The child: one training process, under torchrun or alone, in the project's directory.


def where(frames: list[dict], project: str) -> str:
    """An allocation's innermost frame, and the project line that led to it."""

    def name(frame: dict) -> str:
        file = Path(frame["filename"])
        shown = "compiled code" if "torchinductor" in str(file) else file.name
        return f"{shown}:{frame['line']} {frame['name']}"

    if not frames:
        return "(no Python frame)"
    inside = next((f for f in frames if f["filename"].startswith(project)), None)
    return name(frames[0]) + (f"  <- {name(inside)}" if inside and inside is not frames[0] else "")


def replay(trace: list[dict]) -> tuple[int, dict[str, int]]:
    """The trace's highest allocated point (its index), and each stream's highest reserve."""
    sizes: dict[int, int] = {}
    total = peak = peak_index = 0
    reserved: dict[str, int] = collections.Counter()
    most: dict[str, int] = collections.Counter()
    for i, event in enumerate(trace):
        action, stream = event["action"], str(event["stream"])
        if action == "alloc":
            sizes[event["addr"]] = event["size"]
            total += event["size"]
            if total > peak:
                peak, peak_index = total, i
        elif action == "free_completed" and event["addr"] in sizes:
            total -= sizes.pop(event["addr"])
        elif action in ("segment_alloc", "segment_map"):
            reserved[stream] += event["size"]
            most[stream] = max(most[stream], reserved[stream])
        elif action in ("segment_free", "segment_unmap"):
            reserved[stream] -= event["size"]
    return peak_index, dict(most)


def peak_sites(trace: list[dict], peak_index: int, project: str) -> list[dict]:
    """The blocks alive at the trace's highest allocated point, grouped by allocating line."""
    live = {}
    for event in trace[: peak_index + 1]:
        if event["action"] == "alloc":
            live[event["addr"]] = event
        elif event["action"] == "free_completed":
            live.pop(event["addr"], None)
    sites: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for event in live.values():
        site = sites[where(event["frames"], project)]
        site[0] += event["size"]
        site[1] += 1
    ranked = sorted(sites.items(), key=lambda kv: -kv[1][0])[:TOP_SITES]
    return [{"where": w, "bytes": b, "blocks": n} for w, (b, n) in ranked if b >= 2**20]


def child(argv: list[str]) -> None:
    """Run the project's train.py with the allocator's history on, and stop after the steps."""
    import torch.distributed as dist
    from torch.optim.optimizer import register_optimizer_step_post_hook

    project = os.getcwd()
    sys.path.insert(0, project)
    layers = int(os.environ["MEMORY_LAYERS"])
    if layers:
        import model  # the project's model.py: train.py imports this same module

        config = yaml.safe_load(Path("configs/train.yaml").read_text())
        preset = config["model"]["preset"]
        model.PRESETS[preset] = (layers, *model.PRESETS[preset][1:])
    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0:
        torch.cuda.memory._record_memory_history(max_entries=2_000_000, stacks="python")
    steps = {"done": 0}

    def after_step(*_: object) -> None:
        steps["done"] += 1
        if steps["done"] < int(os.environ["MEMORY_STEPS"]):
            return
        if rank0:
            write_report(project)
        if dist.is_initialized():
            dist.barrier()  # no rank leaves while another may still need it
        os._exit(0)  # stop here: no final checkpoint (at gpt-6.7b, 107 GB)

    register_optimizer_step_post_hook(after_step)
    sys.argv = argv
    # An absolute path, so that train.py's frames are told apart from the libraries'.
    runpy.run_path(os.path.abspath(argv[0]), run_name="__main__")


def write_report(project: str) -> None:
    snapshot = torch.cuda.memory._snapshot()
    if os.environ["MEMORY_SNAPSHOT"]:
        with open(os.environ["MEMORY_SNAPSHOT"], "wb") as f:
            pickle.dump(snapshot, f)
    # The history starts before the first allocation, so the replay sees every block.
    trace = snapshot["device_traces"][torch.cuda.current_device()]
    peak_index, reserved = replay(trace)
    report = {
        "max_allocated": torch.cuda.max_memory_allocated(),
        "max_reserved": torch.cuda.max_memory_reserved(),
        "reserved_by_stream": reserved,
        "sites": peak_sites(trace, peak_index, project),
    }
    Path(os.environ["MEMORY_REPORT"]).write_text(json.dumps(report))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a rendered cuda or multi-gpu project")
    parser.add_argument("--gpus", type=int, help="processes (default: the project's GPUs)")
    parser.add_argument("--layers", type=int, help="train the preset with this many layers")
    parser.add_argument("--accum", type=int, help="micro-batches per step (default: config's)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (default: 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--snapshot", type=Path, help="also write rank 0's allocator snapshot")
    args = parser.parse_args()
    project = args.project.resolve()
    if not (project / ".copier-answers.yml").is_file():
        parser.error(f"{args.project} is not a rendered scaffold project")
    answers = recorded_answers(project)
    if answers["task"] != "pretraining" or answers["hardware"] not in ("cuda", "multi-gpu"):
        parser.error(f"{args.project} is not a cuda or multi-gpu pretraining project")
    if answers["hardware"] == "cuda" and args.gpus:
        parser.error("--gpus: a cuda project trains on one GPU, without torchrun")
    if answers["hardware"] == "multi-gpu":
        args.gpus = args.gpus or answers["gpus"]
    if torch.cuda.device_count() < (args.gpus or 1):
        parser.error(
            f"needs {args.gpus or 1} CUDA GPU(s); this machine has {torch.cuda.device_count()}"
        )
    plan = plan_for(answers, project, args.gpus, args.layers)
    with tempfile.TemporaryDirectory() as name:
        report, smi = measure(project, args, Path(name))
    print_report(plan, report, smi)


if __name__ == "__main__":
    main()
