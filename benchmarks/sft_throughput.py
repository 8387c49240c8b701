"""Fine-tuning throughput: the generated cuda SFT (and DPO) project against plain TRL.

    python benchmarks/sft_throughput.py                 # on one GPU: SFT, then DPO
    python benchmarks/sft_throughput.py --task sft --steps 30
    python benchmarks/sft_throughput.py --variant ckpt:training.activation_checkpointing=true
    python benchmarks/sft_throughput.py --tiny          # CPU: a tiny model, proves the plumbing

Both sides train the same model, built here from Qwen2.5-0.5B's configuration with random
weights and saved in fp32, on the same synthetic chat data: words from a 980-word
vocabulary, about one token each, prompts of 20-400 and completions of 20-1,000 tokens
(log-uniform). Plain TRL is `SFTTrainer` (`DPOTrainer`) with a default `SFTConfig`
(`DPOConfig`): only output_dir, max_length, the per-device batch, gradient accumulation
and max_steps are set to the generated project's, plus logging every step (both sides) so
that the loss curve and the token count can be read. The generated project is rendered
with `scaffold new` (cuda, small) and trained through its own `build_trainer`.

Each contender runs in its own process, one after the other, and reports: non-padding
tokens per second over the steps after the warm-up (TRL's own `num_tokens` count), peak
GPU memory (`torch.cuda.max_memory_allocated`) and the loss at every step. No network:
the tokenizer is a word-level one built here, with Qwen2.5's chat template.
"""

import argparse
import faulthandler
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

import torch
import transformers
import trl
import yaml
from chat_tokenizer import chat_tokenizer
from torch.autograd import DeviceType
from transformers import TrainerCallback

# 980 three-letter words: a pre-tokenizer keeps each whole, so each is one token once learned.
WORDS = ["".join(letters) for letters in product("bdfgklmnprstvz", "aeiou", "bdfgklmnprstvz")]
QWEN2_5_0_5B = {  # Qwen/Qwen2.5-0.5B's config.json
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
TINY = {
    **QWEN2_5_0_5B,
    "vocab_size": 2048,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


# ---- setup: model, tokenizer, data, rendered projects (in the parent process) ----


def build_model(out: Path, shape: dict) -> Path:
    """Random weights in Qwen2.5-0.5B's shape (or the tiny one), saved in fp32 with a tokenizer."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    # Words kept whole, about one token each.
    tokenizer = chat_tokenizer([" ".join(WORDS)] * 10, vocab_size=2048)
    config = Qwen2Config(
        **shape,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def write_data(out: Path, task: str, examples: int, prompt: tuple, completion: tuple) -> None:
    rng = random.Random(0)

    def text(length_range: tuple) -> str:
        return " ".join(rng.choices(WORDS, k=log_uniform(rng, *length_range)))

    def row() -> dict:
        reply = lambda: [{"role": "assistant", "content": text(completion)}]  # noqa: E731
        prompt_messages = [{"role": "user", "content": text(prompt)}]
        if task == "sft":
            return {"prompt": prompt_messages, "completion": reply()}
        return {"prompt": prompt_messages, "chosen": reply(), "rejected": reply()}

    out.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", examples), ("validation", 16)):
        with (out / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(row()) + "\n" for _ in range(count))


def render(task: str, out: Path) -> Path:
    from scaffold.answers import collect
    from scaffold.render import render_project

    answers = collect({"project_name": f"bench-{task}", "task": task, "hardware": "cuda"})
    render_project(answers, out)
    return out


# ---- one contender (in its own process) ----


class StepClock(TrainerCallback):
    """The wall time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times[state.global_step] = time.perf_counter()


class Profile(TrainerCallback):
    """torch.profiler over the two optimizer steps after the warm-up: where the time goes."""

    def __init__(self, warmup: int) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        # Profiler periods end at each step() call: period i is optimizer step i + 1.
        schedule = torch.profiler.schedule(wait=max(warmup - 1, 0), warmup=1, active=2, repeat=1)
        self.profiler = torch.profiler.profile(activities=activities, schedule=schedule)

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.profiler.start()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.profiler.step()

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.profiler.stop()

    def report(self, name: str, seconds: float) -> None:
        """The ops that took the most GPU time, and how busy the GPU was over the two steps."""
        ops = self.profiler.key_averages()
        # GPU kernels only, as the table's own total counts them: CPU ops also carry the time
        # of the kernels they launched, and the step annotations span whole steps.
        kernels = (op for op in ops if op.device_type == DeviceType.CUDA)
        busy = sum(op.self_device_time_total for op in kernels if not op.is_user_annotation) / 1e6
        print(f"profile of {name}: GPU busy {busy:.2f} s of {seconds:.2f} s wall "
              f"({100 * busy / seconds:.0f}%) over two steps")  # fmt: skip
        print(ops.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60))


class StallWatch(TrainerCallback):
    """Every thread's stack, to stderr, each `seconds` until the first optimizer step ends:
    where a run that makes no progress is waiting (a deadlock, or a compile that never ends)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        faulthandler.dump_traceback_later(self.seconds, repeat=True)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        faulthandler.cancel_dump_traceback_later()


def scaffold_trainer(job: dict):
    """The generated project's own trainer, its train.yaml changed only where the job says."""
    project = Path(job["project"])
    sys.path.insert(0, str(project))
    from config import load_config  # the rendered project's modules
    from train import build_trainer

    cfg, _ = load_config(["--config", str(project / "configs" / "train.yaml")])
    cfg["model"]["name"] = job["model"]
    cfg["data"].update(train_file=job["train_file"], validation_file=job["validation_file"])
    never = 10 * job["steps"]  # no evaluation or checkpoint inside the measured steps
    cfg["training"].update(
        output_dir=job["output_dir"], max_steps=job["steps"], logging_steps=1, report_to="none",
        eval_steps=never, save_steps=never, **job["batch"],
    )  # fmt: skip
    for key, value in job["overrides"].items():
        section, leaf = key.split(".", 1)
        cfg[section][leaf] = value
    return build_trainer(cfg)


def trl_trainer(job: dict):
    """Plain TRL: the default config, with only the matched sizes set."""
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    sft = job["task"] == "sft"
    config_cls, trainer_cls = (SFTConfig, SFTTrainer) if sft else (DPOConfig, DPOTrainer)
    on_cpu = not torch.cuda.is_available()
    args = config_cls(
        output_dir=job["output_dir"],
        max_length=job["max_length"],
        max_steps=job["steps"],
        logging_steps=1,
        **job["batch"],
        **({"use_cpu": True, "bf16": False} if on_cpu else {}),  # --tiny only
    )
    data = load_dataset("json", data_files=job["train_file"], split="train")
    return trainer_cls(model=job["model"], args=args, train_dataset=data)


def run_job(job: dict) -> dict:
    trainer = scaffold_trainer(job) if job["side"] == "scaffold" else trl_trainer(job)
    clock = StepClock()
    trainer.add_callback(clock)
    profile = Profile(job["warmup"]) if job["profile"] else None
    if profile:
        trainer.add_callback(profile)
    if job["stall_dump"]:
        trainer.add_callback(StallWatch(job["stall_dump"]))
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "step" in entry]
    tokens = {entry["step"]: entry["num_tokens"] for entry in logs}
    first, last = job["warmup"], job["steps"]
    seconds = clock.times[last] - clock.times[first]
    if profile:
        profile.report(job["side"], clock.times[first + 2] - clock.times[first])
    return {
        "tokens_per_s": (tokens[last] - tokens[first]) / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "losses": [entry["loss"] for entry in logs],
        "tokens": tokens[last],
    }


# ---- the comparison ----


def contenders(task: str, variants: list[str]) -> list[tuple[str, str, dict]]:
    """(name, side, overrides): plain TRL, the generated project, and any --variant of it."""
    found = [("trl-defaults", "trl", {}), ("scaffold", "scaffold", {})]
    for spec in variants:
        name, _, pairs = spec.partition(":")
        overrides = {}
        for pair in filter(None, pairs.split(",")):
            key, _, raw = pair.partition("=")
            overrides[key] = yaml.safe_load(raw)  # as train.py's --section.key overrides read
        found.append((f"scaffold-{name}", "scaffold", overrides))
    return found


def compare(task: str, opts: argparse.Namespace, work: Path) -> None:
    project = work / f"project-{task}"
    if opts.rendered:  # rendered beforehand, on a machine with scaffold and copier
        shutil.copytree(opts.rendered / task, project)
    else:
        render(task, project)
    train_cfg = yaml.safe_load((project / "configs" / "train.yaml").read_text())["training"]
    batch = {
        "per_device_train_batch_size": 2 if opts.tiny else train_cfg["per_device_train_batch_size"],
        "gradient_accumulation_steps": 2 if opts.tiny else train_cfg["gradient_accumulation_steps"],
    }
    if opts.batch:  # every contender at another micro-batch
        size, accum = opts.batch
        batch = {"per_device_train_batch_size": size, "gradient_accumulation_steps": accum}
    per_step = batch["per_device_train_batch_size"] * batch["gradient_accumulation_steps"]
    data = work / f"data-{task}"
    lengths = ((5, 40), (5, 60)) if opts.tiny else ((20, 400), (20, 1000))
    write_data(data, task, per_step * opts.steps, *lengths)

    print(f"\n{task.upper()}: {opts.steps} steps of {batch}, max_length {train_cfg['max_length']}, "
          f"tokens/s over steps {opts.warmup + 1}-{opts.steps}")  # fmt: skip
    chosen = contenders(task, opts.variant)
    if opts.only:  # these only, in the order given: order decides whose compile cache is cold
        by_name = {c[0]: c for c in chosen}
        if unknown := [name for name in opts.only if name not in by_name]:
            raise SystemExit(f"--only: no contender named {', '.join(unknown)}; "
                             f"there are {', '.join(by_name)}")  # fmt: skip
        chosen = [by_name[name] for name in opts.only]
    results = {}
    for name, side, overrides in chosen:
        job = {
            "task": task, "side": side, "overrides": overrides, "project": str(project),
            "model": str(opts.model_dir), "train_file": str(data / "train.jsonl"),
            "validation_file": str(data / "validation.jsonl"),
            "output_dir": str(work / "runs" / name),
            "steps": opts.steps, "warmup": opts.warmup, "batch": batch,
            "max_length": train_cfg["max_length"], "profile": opts.profile,
            "stall_dump": opts.stall_dump,
        }  # fmt: skip
        job_file = work / f"{task}-{name}.json"
        job_file.write_text(json.dumps(job))
        started = time.perf_counter()
        try:
            command = [sys.executable, __file__, "--job", str(job_file)]
            failed = subprocess.run(command, timeout=opts.time_limit).returncode
        except subprocess.TimeoutExpired:
            print(f"measured: {name}: stopped after {opts.time_limit:.0f} s", flush=True)
            continue
        if failed:
            print(f"measured: {name}: failed (its error is above)", flush=True)
            continue
        results[name] = r = json.loads(job_file.with_suffix(".out.json").read_text())
        # Each contender as it comes: a run cut short by a time limit keeps its figures.
        print(f"measured: {name}: {r['tokens_per_s']:,.0f} tokens/s, peak {r['peak_gib']} GiB, "
              f"loss {r['losses'][-1]:.4f}, {time.perf_counter() - started:.0f} s in all "
              "(loading and compiling included)", flush=True)  # fmt: skip
    report(results, opts.steps)


def report(results: dict[str, dict], steps: int) -> None:
    """One table, each contender against plain TRL where it ran, then the loss curves."""
    base = results.get("trl-defaults")
    print(f"{'':20} {'tokens/s':>10} {'vs TRL':>7} {'peak GiB':>9} {'loss@end':>9} {'tokens':>9}")
    for name, r in results.items():
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:6.2f}x" if base else f"{'-':>7}"
        print(f"{name:20} {r['tokens_per_s']:10,.0f} {ratio} "
              f"{peak:>9} {r['losses'][-1]:9.4f} {r['tokens']:9,.0f}")  # fmt: skip
    print("loss by step:")
    for step in range(0, steps, max(1, steps // 10)):
        row = " ".join(f"{name}={r['losses'][step]:.4f}" for name, r in results.items())
        print(f"  step {step + 1:4}: {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sft", "dpo", "both"], default="both")
    parser.add_argument("--steps", type=int, help="optimizer steps (30; 4 with --tiny)")
    parser.add_argument("--warmup", type=int, help="steps left out of tokens/s (5; 1 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny model, short examples, CPU")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:section.key=value,...",
        help="also run the generated project with these train.yaml changes",
    )
    parser.add_argument(
        "--rendered",
        type=Path,
        help="use the projects in DIR/sft and DIR/dpo instead of rendering them (a GPU "
        "machine without scaffold: render them with `scaffold new NAME --hardware cuda`)",
    )
    parser.add_argument(
        "--batch",
        type=lambda v: tuple(map(int, v.split("x"))),
        metavar="SIZExACCUM",
        help="per-device batch and accumulation for every contender (default: the project's)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these contenders, in this order (trl-defaults, scaffold, scaffold-VARIANT)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print, per contender, the ops that took the most GPU time over two steps "
        "after the warm-up (those two steps are slower: leave their tokens/s aside)",
    )
    parser.add_argument(
        "--stall-dump",
        type=float,
        default=0,
        metavar="SECONDS",
        help="print every thread's stack each SECONDS until a contender's first step ends",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop a contender that has not finished in SECONDS (it prints `stopped`) and go on",
    )
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # one contender, internal
    opts = parser.parse_args()
    if opts.job:
        result = run_job(json.loads(opts.job.read_text()))
        opts.job.with_suffix(".out.json").write_text(json.dumps(result))
        return

    opts.steps = opts.steps or (4 if opts.tiny else 30)
    opts.warmup = opts.warmup if opts.warmup is not None else (1 if opts.tiny else 5)
    if not opts.tiny and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --tiny to check the plumbing on the CPU")
    with tempfile.TemporaryDirectory(prefix="sft-throughput-") as tmp:
        work = Path(tmp)
        opts.model_dir = build_model(work / "model", TINY if opts.tiny else QWEN2_5_0_5B)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"{device}, torch {torch.__version__}, transformers {transformers.__version__}, "
              f"trl {trl.__version__}")  # fmt: skip
        for task in ("sft", "dpo") if opts.task == "both" else (opts.task,):
            compare(task, opts, work)


if __name__ == "__main__":
    main()
