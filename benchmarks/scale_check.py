"""Check the memory plan at real size: render projects here, run them on GPUs there.

    # here (scaffold and copier installed): one project per row, with the plan's estimate
    python benchmarks/scale_check.py render scale-check
    # on the GPU machine (torch, transformers, trl, peft, datasets, pyyaml; no hub, no copier)
    python benchmarks/scale_check.py run scale-check [--only NAME ...] [--steps 3]
    # anywhere, on the CPU: the same plumbing with 2-layer models (projects fall back to CPU)
    python benchmarks/scale_check.py run scale-check --tiny --only sft-cuda-medium

`render` writes DIR/<row>/ (the project), DIR/rows.json (answers, command, plan) and
DIR/models/*.json (the shipped config.json of each default model). `run` builds each model
once from its config with random bf16 weights (DIR/cache/, in a child process so its GPU
memory is returned), writes synthetic data long enough to fill the configured sequence
lengths, points a copy of configs/train.yaml at both (configs/scale-check.yaml; a few
optimizer steps, no reporting), and runs the project's own entry point: train.py,
launch/torchrun.sh, or infer.py. Per row it records the peak GPU memory per GPU (polling
`nvidia-smi --query-gpu=memory.used`, which includes the CUDA context and the caching
allocator's reserve, i.e. what the plan estimates), the peak RSS of the process tree, tokens/s,
the plan's estimate and measured/plan. A failing row is recorded and the next one runs;
every row has a timeout. Results: DIR/results.json and DIR/verified.md.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GIB = 1024**3
# (name, answers): what issue 7 asks to verify.
ROWS: list[tuple[str, dict[str, Any]]] = [
    *(
        (f"{task}-cuda-medium", {"task": task, "hardware": "cuda", "scale": "medium"})
        for task in ("classification", "sft", "dpo", "rlhf", "pretraining", "inference")
    ),
    *(
        (
            f"{task}-multi-gpu-large-4",
            {"task": task, "hardware": "multi-gpu", "gpus": 4, "scale": "large"},
        )
        for task in ("classification", "sft", "dpo", "rlhf", "pretraining", "inference")
    ),
    (
        "inference-multi-gpu-medium-2",
        {"task": "inference", "hardware": "multi-gpu", "gpus": 2, "scale": "medium"},
    ),
]
WORDS = (
    "the model learns from data and each step moves its weights toward a lower loss while "
    "the optimizer keeps two moments per parameter and checkpoints save the state to disk"
).split()


# ---------------------------------------------------------------- render (here)


def render(out: Path) -> None:
    from scaffold import memory_plan
    from scaffold.answers import AnswerError, collect
    from scaffold.render import render_project

    out.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    rows = []
    for name, given in ROWS:
        try:
            answers = collect({"project_name": name, "gpu_memory": 80, **given})
        except AnswerError as error:  # the plan refuses it: recorded, not rendered
            print(f"{name}: refused at render: {error}")
            rows.append({"name": name, "given": given, "refused": str(error)})
            continue
        project = out / name
        if not project.exists():
            render_project(answers, project)
        plan = memory_plan.plan(answers)
        model = answers["model"]
        shipped = memory_plan.shipped_config(model)
        (out / "models" / f"{model.replace('/', '--')}.json").write_text(json.dumps(shipped))
        rows.append(
            {
                "name": name,
                "given": given,
                "answers": answers,
                "world": plan_world(answers),
                "plan": {
                    "peak_gib": plan.peak / GIB,
                    "phases": {p.title: p.total / GIB for p in plan.phases},
                    "gpu_memory_gib": answers["gpu_memory"],
                },
            }
        )
        print(f"{name}: {model}, plan {plan.peak / GIB:.1f} GiB per GPU -> {project}")
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")


def plan_world(answers: dict[str, Any]) -> int:
    return (
        answers.get("gpus", 1) * answers.get("nodes", 1)
        if answers["hardware"] == "multi-gpu"
        else 1
    )


# ---------------------------------------------------------------- run (GPU machine)


def build_model(config_file: Path, out: Path, tiny: bool) -> None:
    """Random bf16 weights of a real (or, with tiny, 2-layer) shape, plus a tokenizer."""
    import torch
    import transformers
    from chat_tokenizer import chat_tokenizer

    config = json.loads(config_file.read_text())
    if tiny:
        config |= {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": 512,
        }
    tokenizer = chat_tokenizer(
        [text(2000, seed) for seed in range(50)], vocab_size=300, pad_token="<|endoftext|>"
    )
    config |= {
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    hf_config = transformers.AutoConfig.for_model(**config)
    auto = (
        transformers.AutoModelForMaskedLM
        if config["model_type"] == "modernbert"
        else transformers.AutoModelForCausalLM
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = auto.from_config(hf_config, dtype=torch.bfloat16)
    model.save_pretrained(out, max_shard_size="5GB")
    tokenizer.save_pretrained(out)
    print(f"built {sum(p.numel() for p in model.parameters()):,} parameters -> {out}")


def text(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    while sum(map(len, words)) + len(words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path.resolve())


def synthetic_data(task: str, data: Path, n: int) -> dict[str, str]:
    """Files whose examples fill the configured lengths (~3 characters per token)."""

    def chat(role: str, chars: int, i: int) -> list[dict]:
        return [{"role": role, "content": text(chars, i)}]

    if task == "sft":
        rows = [
            {"prompt": chat("user", 200, i), "completion": chat("assistant", 9000, i)}
            for i in range(n)
        ]
        return {
            "train": write_jsonl(data / "train.jsonl", rows),
            "validation": write_jsonl(data / "validation.jsonl", rows[:8]),
        }
    if task == "dpo":
        rows = [
            {
                "prompt": chat("user", 200, i),
                "chosen": chat("assistant", 9000, i),
                "rejected": chat("assistant", 9000, -i - 1),
            }
            for i in range(n)
        ]
        return {
            "train": write_jsonl(data / "train.jsonl", rows),
            "validation": write_jsonl(data / "validation.jsonl", rows[:8]),
        }
    if task == "classification":
        rows = [{"text": text(2000, i), "label": "ab"[i % 2]} for i in range(n)]
        return {
            "train": write_jsonl(data / "train.jsonl", rows),
            "validation": write_jsonl(data / "validation.jsonl", rows[:16]),
        }
    if task == "rlhf":
        prefs = [
            # about 900 tokens of prompt + answer (the built tokenizer makes ~1 per 2
            # characters): under max_length, which drops longer pairs
            {"prompt": text(200, i), "chosen": text(1500, i), "rejected": text(1500, -i - 1)}
            for i in range(n)
        ]
        prompts = [{"prompt": text(1500, i)} for i in range(n)]
        return {
            "preferences": write_jsonl(data / "preferences.jsonl", prefs),
            "preferences_validation": write_jsonl(data / "preferences_validation.jsonl", prefs[:8]),
            "prompts": write_jsonl(data / "prompts.jsonl", prompts),
        }
    if task == "inference":
        return {
            "prompts": write_jsonl(
                data / "prompts.jsonl", [{"id": i, "prompt": text(1500, i)} for i in range(n)]
            )
        }
    # pretraining: token files as prepare_data.py writes them, GPT-2's vocabulary size
    import numpy as np

    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, tokens in (("train", 50_000_000), ("val", 2_000_000)):
        rng.integers(0, 50257, tokens, dtype=np.uint16).tofile(data / f"{split}.bin")
    meta = {"dtype": "uint16", "vocab_size": 50257, "tokenizer": "gpt2"}
    (data / "meta.json").write_text(json.dumps(meta) + "\n")
    return {"out_dir": str(data.resolve())}


def scale_check_config(row: dict, project: Path, model_dir: Path, steps: int, tiny: bool) -> Path:
    """configs/scale-check.yaml: train.yaml pointed at the built model and synthetic data."""
    import yaml

    task, world = row["answers"]["task"], row["world"]
    cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    # Inference: two generate calls' worth per GPU (random weights rarely stop early).
    n = 2 * cfg["generation"]["batch_size"] * world if task == "inference" else max(256, 64 * world)
    files = synthetic_data(task, project / "scale-data", n=n)
    model = str(model_dir.resolve())
    if task == "pretraining":
        cfg["data"]["out_dir"] = files["out_dir"]
        if tiny:
            cfg["model"].update(preset="tiny", block_size=128)
        t = cfg["training"]
        t.update(max_steps=steps, lr_decay_steps=steps, warmup_steps=1)
        cfg["eval"].update(interval=10**9, batches=2)
        cfg["checkpoint"]["interval"] = 10**9
        cfg["logging"]["interval"] = 1
    elif task == "inference":
        cfg["model"]["name"] = model
        cfg["data"]["prompts_file"] = files["prompts"]
        cfg["data"]["output_file"] = str((project / "runs" / "generations.jsonl").resolve())
    elif task == "rlhf":
        cfg["model"]["name"] = cfg["reward_model"]["name"] = model
        cfg["data"].update(
            preference_file=files["preferences"],
            preference_validation_file=files["preferences_validation"],
            prompt_file=files["prompts"],
        )
        for section in ("reward_training", "policy_training"):
            cfg[section].update(max_steps=steps, report_to="none")
    else:
        cfg["model"]["name"] = model
        cfg["data"].update(train_file=files["train"], validation_file=files["validation"])
        cfg["training"].update(max_steps=steps, report_to="none")
    if tiny:  # plumbing only: short sequences, no accumulation, on the CPU
        # GRPO keeps its accumulation: its generation batch must divide by num_generations.
        for section in ("training", "reward_training"):
            if section in cfg and "gradient_accumulation_steps" in cfg[section]:
                cfg[section]["gradient_accumulation_steps"] = 1
        if "max_length" in cfg.get("training", {}):
            cfg["training"]["max_length"] = 256
        if "policy_training" in cfg:
            cfg["policy_training"]["max_completion_length"] = 32
    path = project / "configs" / "scale-check.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def command(row: dict) -> list[str]:
    answers = row["answers"]
    config = ["--config", "configs/scale-check.yaml"]
    if answers["task"] == "inference":
        return [sys.executable, "infer.py", *config]
    if answers["hardware"] == "multi-gpu":
        return ["bash", "launch/torchrun.sh"]  # CONFIG= in the environment picks the file
    return [sys.executable, "train.py", *config]


def gpu_memory_used() -> list[int]:
    """MiB used per GPU, from nvidia-smi; [] without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def session_rss(sid: int) -> int:
    """Bytes resident in every process of session `sid` (the run and all it started)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat, after pid and (comm)
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def monitored(cmd: list[str], cwd: Path, log: Path, timeout: float, env: dict) -> dict:
    """Run `cmd` in its own session; poll GPU memory and RSS until it ends or times out."""
    peak_gpu: list[int] = []
    peak_rss = 0
    start = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        timed_out = False
        while process.poll() is None:
            used = gpu_memory_used()
            peak_gpu = [max(a, b) for a, b in zip(peak_gpu or [0] * len(used), used, strict=False)]
            peak_rss = max(peak_rss, session_rss(process.pid))
            if time.monotonic() - start > timeout:
                timed_out = True
                stop(process)
                break
            time.sleep(0.5)
    return {
        "rc": process.wait(),
        "timed_out": timed_out,
        "seconds": time.monotonic() - start,
        "peak_gpu_mib": peak_gpu,
        "peak_rss_gib": peak_rss / GIB,
    }


def stop(process: subprocess.Popen) -> None:
    """End the run's session (torchrun starts workers in their own sessions: see DESIGN)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def tokens_per_second(row: dict, project: Path, log_text: str, steps: int) -> float | None:
    """From the project's own logs: pretraining's tokens_per_s, the Trainer's train_runtime,
    infer.py's prompts over its replicas' time (times max_new_tokens: random weights rarely
    stop early)."""
    import yaml

    task = row["answers"]["task"]
    cfg = yaml.safe_load((project / "configs" / "scale-check.yaml").read_text())
    if task == "pretraining":
        found = re.findall(r"tokens_per_s\W+([0-9.]+)", log_text)
        for log in (project / "runs").rglob("*.jsonl"):
            records = [json.loads(line) for line in log.read_text().splitlines()]
            found += [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
        return float(found[-1]) if found else None
    if task == "inference":  # each replica prints its own "N prompts in Ts": they run together
        found = [
            (int(n), float(t)) for n, t in re.findall(r"(\d+) prompts in ([0-9.]+)s", log_text)
        ]
        if not found:
            return None
        prompts, seconds = sum(n for n, _ in found), max(t for _, t in found)
        return prompts / seconds * cfg["generation"]["max_new_tokens"]
    runtimes = re.findall(r"'train_runtime': '?([0-9.]+)", log_text)
    if not runtimes:
        return None
    section = cfg["policy_training" if task == "rlhf" else "training"]
    if task == "rlhf":
        seq = section.get("max_prompt_length", 512) + section["max_completion_length"]
    elif task == "classification":
        seq = cfg["data"]["max_length"]
    else:
        seq = section["max_length"] * (2 if task == "dpo" else 1)
    per_step = section["per_device_train_batch_size"] * section["gradient_accumulation_steps"] * seq
    return per_step * row["world"] * steps / float(runtimes[-1])


def estimate_gib(row: dict, log_text: str) -> float:
    """The plan's figure for what ran: vLLM or the transformers fallback for inference."""
    phases = row["plan"]["phases"]
    if row["answers"]["task"] == "inference":
        engine = "vLLM" if "engine: vLLM" in log_text else "transformers generate"
        return phases.get(engine, row["plan"]["peak_gib"])
    return row["plan"]["peak_gib"]


def run(
    out: Path, only: list[str], steps: int, timeout: float, tiny: bool, keep: bool, cache: Path
) -> None:
    rows = [r for r in json.loads((out / "rows.json").read_text()) if "answers" in r]
    rows = [r for r in rows if not only or r["name"] in only]
    cache = (cache or out / "cache") / ("tiny" if tiny else "real")
    last_use = {r["answers"]["model"]: r["name"] for r in rows}
    info = machine()
    previous = out / "results.json"
    results = (
        [r for r in json.loads(previous.read_text()) if r["name"] not in only]
        if (only and previous.is_file())
        else []
    )
    for index, row in enumerate(rows, 1):
        name, answers = row["name"], row["answers"]
        project = out / name
        print(f"[{index}/{len(rows)}] {name}: {answers['model']} ...", flush=True)
        record: dict[str, Any] = {"name": name, "model": answers["model"], **info}
        try:
            record |= run_row(row, project, cache, out, steps, timeout, tiny)
        except Exception as error:  # one row's failure must not stop the others
            record |= {"status": f"error: {error}"}
        print(f"    {record.get('status')}: {summary(record)}", flush=True)
        results.append(record)
        results.sort(key=lambda r: [name for name, _ in ROWS].index(r["name"]))
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        shutil.rmtree(project / "runs", ignore_errors=True)
        model = answers["model"]
        if not keep and last_use[model] == name and answers["task"] != "pretraining":
            shutil.rmtree(cache / model.replace("/", "--"), ignore_errors=True)
    (out / "verified.md").write_text(markdown(results, steps))
    print(f"wrote {out / 'results.json'} and {out / 'verified.md'}")


def run_row(
    row: dict, project: Path, cache: Path, out: Path, steps: int, timeout: float, tiny: bool
) -> dict:
    answers = row["answers"]
    model_dir = cache / answers["model"].replace("/", "--")
    if answers["task"] != "pretraining" and not (model_dir / "config.json").is_file():
        config = out / "models" / f"{answers['model'].replace('/', '--')}.json"
        build = [sys.executable, __file__, "build-model", str(config), str(model_dir)]
        subprocess.run(build + (["--tiny"] if tiny else []), check=True, timeout=3600)
    scale_check_config(row, project, model_dir, steps, tiny)
    cmd = command(row)
    env = {**os.environ, "CONFIG": "configs/scale-check.yaml", "HF_HUB_OFFLINE": "1"}
    if tiny:
        env["CUDA_VISIBLE_DEVICES"] = ""
        if answers["hardware"] == "multi-gpu":
            env["NPROC_PER_NODE"] = "2"
    result = monitored(cmd, project, project / "scale-check.log", timeout, env)
    log_text = (project / "scale-check.log").read_text(errors="replace")
    oom = "out of memory" in log_text.lower()
    status = (
        "timeout"
        if result["timed_out"]
        else "OOM" if oom else "ok" if result["rc"] == 0 else f"failed (rc {result['rc']})"
    )
    estimate = estimate_gib(row, log_text)
    measured = max(result["peak_gpu_mib"], default=0) / 1024
    shown = ["CONFIG=configs/scale-check.yaml"] if cmd[0] == "bash" else []
    shown += ["python" if c == sys.executable else c for c in cmd]
    return {
        "status": status,
        "command": f"cd {project.name} && {' '.join(shown)}",
        "gpus": row["world"],
        "peak_gpu_gib_per_gpu": [round(m / 1024, 1) for m in result["peak_gpu_mib"]],
        "peak_rss_gib": round(result["peak_rss_gib"], 1),
        "tokens_per_s": tokens_per_second(row, project, log_text, steps),
        "plan_gib": round(estimate, 1),
        "measured_over_plan": round(measured / estimate, 2) if measured else None,
        "seconds": round(result["seconds"]),
        "log_tail": log_text[-2000:],
    }


def machine() -> dict:
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except OSError:
        gpu = []
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "none"
    return {
        "gpu_kind": gpu[0] if gpu else f"none (CPU, {platform.machine()})",
        "torch": torch_version,
        "date": datetime.date.today().isoformat(),
    }


def summary(record: dict) -> str:
    return (
        f"GPU peak {record.get('peak_gpu_gib_per_gpu')} GiB, plan {record.get('plan_gib')} GiB, "
        f"ratio {record.get('measured_over_plan')}, RSS {record.get('peak_rss_gib')} GiB, "
        f"{record.get('tokens_per_s')} tokens/s"
    )


def markdown(results: list[dict], steps: int) -> str:
    first = results[0] if results else machine()
    lines = [
        "# Verified at real size",
        "",
        f"GPU: {first['gpu_kind']}; torch {first['torch']}; {first['date']}. Models built from "
        f"their real config.json with random bf16 weights; {steps} optimizer steps (or one "
        "inference pass over the prompts) through each project's own entry point. Peak GPU "
        "memory is the maximum `nvidia-smi` memory.used per GPU (CUDA context and the caching "
        "allocator's reserve included); RSS is the whole process tree's.",
        "",
        "| project | status | GPUs | peak GiB per GPU | plan GiB | measured/plan "
        "| host RSS GiB | tokens/s | command |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        per_gpu = ", ".join(map(str, r.get("peak_gpu_gib_per_gpu") or [])) or "-"
        tps = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "-"
        cells = [
            r["name"],
            r["status"],
            r.get("gpus", "-"),
            per_gpu,
            r.get("plan_gib", "-"),
            r.get("measured_over_plan") or "-",
            r.get("peak_rss_gib", "-"),
            tps,
            f"`{r.get('command', '-')}`",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="render the projects and their plans (here)")
    render_cmd.add_argument("dir", type=Path)
    run_cmd = commands.add_parser("run", help="build the models and run every row (GPU machine)")
    run_cmd.add_argument("dir", type=Path)
    run_cmd.add_argument("--only", nargs="*", default=[], help="row names (default: all)")
    run_cmd.add_argument("--steps", type=int, default=3, help="optimizer steps per training row")
    run_cmd.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    run_cmd.add_argument(
        "--tiny", action="store_true", help="2-layer models on the CPU: plumbing only"
    )
    run_cmd.add_argument(
        "--keep-models", action="store_true", help="keep built models after their last row"
    )
    run_cmd.add_argument("--cache", type=Path, help="where built models go (default: DIR/cache)")
    build = commands.add_parser("build-model", help=argparse.SUPPRESS)
    build.add_argument("config", type=Path)
    build.add_argument("out", type=Path)
    build.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "render":
        render(args.dir)
    elif args.command == "run":
        run(args.dir, args.only, args.steps, args.timeout, args.tiny, args.keep_models, args.cache)
    else:
        build_model(args.config, args.out, args.tiny)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
