"""Pretrain a GPT from scratch on several GPUs with DDP.

    torchrun --nproc_per_node 8 train.py --config configs/train.yaml [--section.key value ...]
    bash launch/torchrun.sh [--section.key value ...] [--resume [CHECKPOINT]]

Reads the token files written by prepare_data.py and writes to `training.out_dir`:
log.jsonl (metrics), ckpt_<step>/ (the last few checkpoints, each with a manifest of
checksums), best (a link to the checkpoint with the lowest validation loss) and, at the
end, model.safetensors. The first Ctrl+C / SIGTERM saves a checkpoint and stops.
"""

import hashlib
import itertools
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from config import load_config, run
from cudnn_attention import CUDNN_MISSING
from fused_mlp import NVMATH_MISSING
from model import GPT, GPTConfig


def read_meta(data_dir: Path) -> dict:
    """prepare_data.py's record of the token files: their dtype and the vocabulary size."""
    meta = data_dir / "meta.json"
    if not meta.is_file():
        raise SystemExit(
            f"{meta} not found: prepare the data first, "
            "python prepare_data.py --config <this config>"
        )
    return json.loads(meta.read_text())


class TokenWindows(Dataset):
    """Non-overlapping windows of block_size + 1 tokens from a token file.

    x is a window without its last token, y without its first: the targets are shifted
    here, once (R-LOSS-SHAPE). The file is opened with `np.memmap` in the dtype recorded
    in meta.json (R-MEMMAP-DTYPE), lazily, so each DataLoader worker maps it itself.
    """

    def __init__(self, path: Path, dtype: str, block_size: int):
        if not path.is_file():  # R-DATA-VALIDATION
            raise SystemExit(f"{path} not found: run prepare_data.py with this config first")
        self.path, self.dtype, self.block_size = path, dtype, block_size
        n_tokens = path.stat().st_size // np.dtype(dtype).itemsize
        self.n_windows = (n_tokens - 1) // block_size
        if self.n_windows < 1:
            raise SystemExit(
                f"{path} holds {n_tokens} tokens, fewer than block_size + 1 = {block_size + 1}:"
                " use more data or a smaller model.block_size"
            )
        self.tokens: np.memmap | None = None

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokens is None:
            self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        start = i * self.block_size
        window = torch.from_numpy(self.tokens[start : start + self.block_size + 1].astype(np.int64))
        return window[:-1], window[1:]


def batches(loader: DataLoader, epoch: int, start: int):
    """Yield (epoch, index, x, y) forever, from micro-batch `start` of `epoch` on."""
    while True:
        loader.sampler.set_epoch(epoch)  # R-DIST-SAMPLER: a new shuffle each epoch
        for i, (x, y) in enumerate(itertools.islice(loader, start, None), start):
            yield epoch, i, x, y
        epoch, start = epoch + 1, 0


def lr_at(step: int, t: dict) -> float:
    """R-LR-SCHEDULE: linear warmup to `lr`, then cosine decay to `min_lr` at `lr_decay_steps`."""
    if step < t["warmup_steps"]:
        return t["lr"] * (step + 1) / t["warmup_steps"]
    if step >= t["lr_decay_steps"]:
        return t["min_lr"]
    progress = (step - t["warmup_steps"]) / (t["lr_decay_steps"] - t["warmup_steps"])
    return t["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * progress)) * (t["lr"] - t["min_lr"])


@torch.no_grad()  # R-NO-GRAD-EVAL
def evaluate(
    model: torch.nn.Module, loader: DataLoader, n_batches: int, device: torch.device, amp
) -> float:
    model.eval()  # R-TRAIN-EVAL-MODE
    losses = []
    for x, y in itertools.islice(loader, n_batches):
        x, y = x.to(device), y.to(device)
        with amp:
            losses.append(model(x, y))  # the model returns the loss (R-LOSS-SHAPE, model.py)
    model.train()
    # Each rank scored its own shard of the validation set; average over all of them.
    totals = torch.stack([torch.stack(losses).sum(), torch.tensor(len(losses), device=device)])
    dist.all_reduce(totals)
    return (totals[0] / totals[1]).item()


class Watchdog:
    """R-NAN-GUARD on the device, so that no step waits for the GPU to be checked.

    Each optimizer step it records, as tensors, the first step whose loss (or gradient
    norm) is not finite, and the first step whose loss jumps far above its running mean,
    or whose gradient norm has stayed far above its own for a few steps: a blow-up on its
    way to NaN. A lone gradient-norm spike is routine, and clipping absorbs it. A step
    with non-finite gradients is skipped by fused AdamW itself (`found_inf`), so no
    non-finite update is ever kept. train() reads the record where it syncs anyway
    (logging, evaluation, checkpoints) and stops before saving anything.
    """

    # Running means: exponential, over about the last 50 steps. They start afresh on a
    # resume, and a step is judged against them from the second step on, so a resume with
    # too high a learning rate is caught at once.
    DECAY = 0.98
    GRAD_NORM_SPIKE_STEPS = 3

    def __init__(self, t: dict, step: int, device: torch.device, grads_may_overflow: bool):
        self.loss_spike, self.grad_norm_spike = t["loss_spike"], t["grad_norm_spike"]
        # fp16 with a loss scaler: non-finite gradients are routine; the scaler skips them.
        self.grads_may_overflow = grads_may_overflow
        zero = torch.zeros((), device=device)
        self.step = zero + step  # a device counter: no host-to-device copy per step
        self.seen, self.loss_mean, self.grad_norm_mean = zero, zero, zero
        self.first_nonfinite, self.first_spike = zero, zero  # 0: none yet
        self.high_grad_norm_steps = zero  # in a row

    def record(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.step = self.step + 1
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        nonfinite = ~torch.isfinite(loss) if self.grads_may_overflow else ~finite
        judged = finite & (self.seen > 0)
        high_loss = torch.zeros_like(finite)
        if self.loss_spike is not None:
            high_loss = judged & (loss > self.loss_spike * self.loss_mean)
        high_grad_norm = torch.zeros_like(finite)
        if self.grad_norm_spike is not None:
            high_grad_norm = judged & (grad_norm > self.grad_norm_spike * self.grad_norm_mean)
        self.high_grad_norm_steps = torch.where(high_grad_norm, self.high_grad_norm_steps + 1, 0)
        spike = high_loss | (self.high_grad_norm_steps >= self.GRAD_NORM_SPIKE_STEPS)
        self.first_nonfinite = self._first(self.first_nonfinite, nonfinite)
        self.first_spike = self._first(self.first_spike, spike)
        # Only ordinary steps move the running means: an outlier would drag them along.
        healthy = finite & ~high_loss & ~high_grad_norm
        self.loss_mean = self._mean(self.loss_mean, loss, healthy)
        self.grad_norm_mean = self._mean(self.grad_norm_mean, grad_norm, healthy)
        self.seen = self.seen + healthy

    def _first(self, first: torch.Tensor, happened: torch.Tensor) -> torch.Tensor:
        return torch.where((first == 0) & happened, self.step, first)

    def _mean(self, mean: torch.Tensor, value: torch.Tensor, healthy: torch.Tensor) -> torch.Tensor:
        moved = torch.where(self.seen == 0, value, self.DECAY * mean + (1 - self.DECAY) * value)
        return torch.where(healthy, moved, mean)

    def verdict(self, nonfinite_at: float, spike_at: float, last_good: Path | None) -> str | None:
        """Why training must stop, from the record read at a sync point; None if it is healthy."""
        if nonfinite_at:
            problem = f"the loss is not finite at step {nonfinite_at:.0f} (its update was skipped)"
        elif spike_at:
            problem = (
                f"training is diverging: at step {spike_at:.0f} the loss jumped far above its"
                f" running mean (training.loss_spike: {self.loss_spike}), or the gradient norm"
                f" had stayed far above its own for {self.GRAD_NORM_SPIKE_STEPS} steps"
                f" (training.grad_norm_spike: {self.grad_norm_spike})"
            )
        else:
            return None
        return (
            f"{problem}: stopping. Last good checkpoint: {last_good or 'none yet'};"
            " resume from it with a lower training.lr."
        )


def seed_everything(seed: int) -> None:
    """R-SEED: one seed for Python, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict:
    """The RNG states as tensors and plain types, so `weights_only=True` can load them."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# A checkpoint is a directory, ckpt_<step>/. Its manifest.json, written last, lists every
# file in it with its size and SHA-256: without it the save never finished, and a file that
# no longer matches it (a copy cut short, flipped bits) is caught before it is loaded.
MANIFEST = "manifest.json"


def fingerprint(file: Path) -> dict:
    with file.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": file.stat().st_size, "sha256": digest}


def write_manifest(directory: Path, files: dict[str, dict]) -> None:
    (directory / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))


def save_atomic(state: dict, path: Path) -> None:
    """R-SAFE-INTERRUPT: write into <path>.tmp, the manifest last, then rename the directory,
    so a crash mid-write never leaves a checkpoint that looks complete."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    write_manifest(tmp, {"state.pt": fingerprint(tmp / "state.pt")})
    shutil.rmtree(path, ignore_errors=True)  # this step, saved by a run resumed from earlier
    os.replace(tmp, path)


def checkpoints(out_dir: Path) -> list[Path]:
    """ckpt_<step> directories, oldest first."""
    found = [p for p in out_dir.glob("ckpt_*") if p.name.removeprefix("ckpt_").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("ckpt_")))


def file_damage(directory: Path, manifest: dict[str, dict]) -> str | None:
    """What is wrong with the first file of `manifest` that does not match it, if any."""
    for name, expected in manifest.items():
        file = directory / name
        if not file.is_file():
            return f"incomplete: {name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"truncated: {name} has {file.stat().st_size} of its {expected['bytes']} bytes"
        if fingerprint(file) != expected:
            return f"corrupted: {name} fails its SHA-256 checksum"
    return None


def damage(path: Path) -> str | None:
    """Why checkpoint `path` cannot be resumed from, or None when every file matches its
    manifest. Collective: each rank checksums its share of the files."""
    if not path.is_dir():
        return "not a checkpoint directory" if path.exists() else "missing"
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        return f"incomplete: it has no {MANIFEST} (its save never finished)"
    except ValueError:
        return f"corrupted: its {MANIFEST} is unreadable"
    rank, world = dist.get_rank(), dist.get_world_size()
    found = [None] * world
    dist.all_gather_object(found, file_damage(path, dict(sorted(manifest.items())[rank::world])))
    return next((problem for problem in found if problem), None)


def find_checkpoint(resume: str, out_dir: Path) -> Path:
    """R-RESUME: --resume alone means the newest intact checkpoint in the output dir, skipping
    damaged newer ones with a warning; --resume PATH means that checkpoint, which must be intact."""
    if resume == "latest":
        for path in reversed(checkpoints(out_dir)):
            problem = damage(path)
            if problem is None:
                return path
            if dist.get_rank() == 0:
                warnings.warn(f"skipping checkpoint {path}: {problem}", stacklevel=2)
        raise SystemExit(f"--resume: no intact checkpoint (ckpt_*) in {out_dir}")
    path = Path(resume)
    problem = damage(path)
    if problem is None:
        return path
    others = (p for p in reversed(checkpoints(path.parent)) if p.resolve() != path.resolve())
    intact = next((p for p in others if damage(p) is None), None)
    if intact:
        advice = f"; the newest intact checkpoint beside it is {intact}"
    else:
        advice = f"; {out_dir} gets a checkpoint every checkpoint.interval steps"
    raise SystemExit(f"--resume: checkpoint {path} is {problem}{advice}")


def remove_unfinished_saves(out_dir: Path) -> list[Path]:
    """Delete what killed saves left behind (<name>.tmp, up to a whole checkpoint each)."""
    stale = sorted(out_dir.glob("*.tmp"))
    for tmp in stale:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
    return stale


def mark_best(checkpoint: Path) -> None:
    """Point <out_dir>/best at `checkpoint`: a link of a few bytes, where a copy would rewrite
    every weight at each better evaluation. Replaced atomically, like a checkpoint."""
    link, tmp = checkpoint.with_name("best"), checkpoint.with_name("best.tmp")
    tmp.symlink_to(checkpoint.name)
    os.replace(tmp, link)


def remove_old_checkpoints(out_dir: Path, keep_last: int) -> None:
    """R-FULL-CHECKPOINT: keep the last `keep_last` checkpoints, and the best one."""
    best = (out_dir / "best").resolve()
    for old in checkpoints(out_dir)[:-keep_last]:
        if old.resolve() != best:
            shutil.rmtree(old)


def make_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
    cfg: dict,
    device: torch.device,
) -> dict | None:
    """R-FULL-CHECKPOINT: weights, optimizer, progress, every rank's RNG and the config.

    Collective: every rank calls it. The state dicts are consolidated (full, not sharded)
    on rank 0's CPU, which gets the checkpoint; the other ranks get None.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    rng = [None] * dist.get_world_size()
    dist.all_gather_object(rng, rng_state(device))
    if dist.get_rank() != 0:
        return None
    return {
        "model": model_state,
        "optimizer": optimizer_state,
        **progress,
        "rng": rng,
        "config": cfg,
    }


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict:
    """Restore a checkpoint on every rank; return its progress (step, epoch, ...)."""
    # R-SAFE-LOAD: tensors and plain types only. mmap: ranks share the file, not copies of it.
    ckpt = torch.load(path / "state.pt", map_location="cpu", mmap=True, weights_only=True)
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, ckpt["model"], options=options)
    set_optimizer_state_dict(model, optimizer, ckpt["optimizer"], options=options)
    if len(ckpt["rng"]) == dist.get_world_size():
        set_rng_state(ckpt["rng"][dist.get_rank()], device)
    else:
        warnings.warn("checkpoint has another number of ranks: RNG streams restart", stacklevel=2)
    return {key: ckpt[key] for key in PROGRESS}


# What a checkpoint records about where training stands.
PROGRESS = ("step", "epoch", "batch_in_epoch", "best_val_loss")


class Logger:
    """Metrics to <out_dir>/log.jsonl, and to W&B when `logging.wandb` is on (R-LOG-AFTER-STEP).

    W&B is imported lazily and initialised once, before the first log; when it is not
    installed or cannot start, training goes on with the JSONL log alone. Only rank 0 logs.
    """

    def __init__(self, out_dir: Path, cfg: dict, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.file = (out_dir / "log.jsonl").open("a")
        self.wandb = None
        if cfg["logging"]["wandb"]:
            try:
                import wandb

                self.wandb = wandb.init(
                    project=cfg["logging"]["wandb_project"], name=out_dir.name, config=cfg
                )
            except Exception as error:  # a missing package or account must not stop training
                warnings.warn(f"W&B is off ({error}); logging to log.jsonl only", stacklevel=2)

    def info(self, message: str) -> None:
        if self.enabled:
            self.show(message)

    def from_signal_handler(self, message: str) -> None:
        """A line written by a signal handler. os.write, not print: the handler runs between
        two bytecodes of the code it interrupted, possibly inside a print to stdout, and a
        buffered stream refuses a second write from the same thread ("reentrant call")."""
        if self.enabled:
            os.write(sys.stdout.fileno(), f"{message}\n".encode())

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """R-ITEM-LOGGING: Python floats only; json.dumps refuses tensors."""
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        self.show(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    @staticmethod
    def show(message: str) -> None:
        """A line above the progress bar, not through it; flushed, for logs that are files."""
        with tqdm.external_write_mode():
            print(message, flush=True)


def duration(seconds: float) -> str:
    """A length of time as people say it: 0.42s, 14m05s, 3h12m, 2d07h."""
    if seconds < 60:
        return f"{seconds:.2g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def run_estimate(seconds_per_step: float, max_steps: int, steps_left: int | None) -> str:
    """One line: how long the configured run takes at the pace just measured."""
    estimate = (
        f"estimated run time: {duration(seconds_per_step * max_steps)} for {max_steps:,} steps"
        f" at {seconds_per_step:.3g} s/step"
    )
    if steps_left is not None:  # a resumed run
        estimate += f", {duration(seconds_per_step * steps_left)} of it left"
    return estimate + ", plus evaluations and checkpoints"


def stop_on_signal(log: Logger) -> threading.Event:
    """R-SAFE-INTERRUPT: SIGTERM or SIGUSR1 (what a scheduler sends on preemption or ahead of
    a time limit) or Ctrl+C finishes the current step, saves a checkpoint and exits 0.
    Only a second Ctrl+C stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        if stop.is_set():
            return
        stop.set()
        ignore_repeated_stop_signals()
        name = signal.Signals(signum).name
        log.from_signal_handler(f"{name}: saving a checkpoint after this step")

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, handler)
    return stop


def ignore_repeated_stop_signals() -> None:
    """A scheduler's SIGTERM can come more than once (to every process of the job, and
    through a launcher or wrapper script, late when the machine is busy). A copy that lands
    as the process exits would kill it, as Python gives signals their default action back
    then, and turn a clean stop into a failed job: once stopping, SIGTERM and SIGUSR1 are
    ignored."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def stop_with_the_launcher() -> None:
    """No orphans: exit within seconds when torchrun or launch/torchrun.sh dies, even by
    SIGKILL. torchrun starts the workers in sessions of their own, so nothing else would."""
    torchrun = os.getppid()
    launcher = int(os.environ.get("LAUNCHER_PID", torchrun))

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def watch() -> None:
        while os.getppid() == torchrun and alive(launcher):
            time.sleep(1)
        print(f"the launcher is gone: stopping worker {os.getpid()}", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()


def train(cfg: dict, resume: str | None) -> None:
    data, t = cfg["data"], cfg["training"]
    out_dir = Path(t["out_dir"])  # R-OUTPUT-NAME: runs/<project name>
    if cfg["checkpoint"]["interval"] % cfg["eval"]["interval"]:
        raise SystemExit(
            f"checkpoint.interval ({cfg['checkpoint']['interval']}) must be a multiple of"
            f" eval.interval ({cfg['eval']['interval']}): the best checkpoint is picked by the"
            " validation loss measured at its step"
        )
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # R-DDP-INIT: before the model is built
    else:
        warnings.warn("CUDA is not available: running on the CPU with gloo (slow)", stacklevel=2)
        device = torch.device("cpu")
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = Logger(out_dir, cfg, enabled=rank == 0)  # R-DDP-INIT: only rank 0 logs and saves
    log.info(f"device: {device} (rank {rank} of {world_size})")
    if rank == 0:
        for stale in remove_unfinished_saves(out_dir):
            log.info(f"removed {stale}: an unfinished save of an earlier run")
    amp, scaler = nullcontext(), torch.amp.GradScaler("cuda", enabled=False)
    if device.type == "cuda":
        # R-AMP: bf16 autocast and TF32 matmuls; the weights stay FP32. GPUs without bf16
        # (V100, T4) get fp16 autocast, whose small gradients need a loss scaler. TF32 is set
        # through the API compile's max-autotune reads too: it refuses the per-backend one.
        torch.set_float32_matmul_precision("high")
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        log.info(f"mixed precision: {amp_dtype} autocast")
        amp = torch.autocast("cuda", dtype=amp_dtype)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    seed_everything(t["seed"])  # R-SEED: before the model is built, identically on every rank

    # Data: token files from prepare_data.py, in the dtype they were written with.
    data_dir = Path(data["out_dir"])
    meta = read_meta(data_dir)
    block_size = cfg["model"]["block_size"]
    train_set = TokenWindows(data_dir / "train.bin", meta["dtype"], block_size)
    val_set = TokenWindows(data_dir / "val.bin", meta["dtype"], block_size)
    # R-DIST-SAMPLER: each rank reads its own shard; the samplers shuffle, the loaders never do.
    train_sampler = DistributedSampler(train_set, shuffle=True, seed=t["seed"], drop_last=True)
    val_sampler = DistributedSampler(val_set, shuffle=False)
    # The loaders draw worker seeds from their own generator, not the global RNG, so a
    # resumed run replays the same random stream (dropout) as an uninterrupted one.
    # R-PIN-MEMORY: pinned memory and worker processes feed a GPU; on a CPU they only cost.
    on_gpu = device.type == "cuda"
    loader_args = {
        "pin_memory": on_gpu,
        "num_workers": data["num_workers"] if on_gpu else 0,
        "generator": torch.Generator(),
    }
    train_loader = DataLoader(
        train_set, t["batch_size"], sampler=train_sampler, drop_last=True, **loader_args
    )
    val_loader = DataLoader(val_set, t["batch_size"], sampler=val_sampler, **loader_args)
    if len(train_loader) == 0:
        raise SystemExit(f"{len(train_set)} training windows make no batch of {t['batch_size']}")

    # Model. The vocabulary is padded to a multiple of 64 for faster matmuls.
    model_args = {k: v for k, v in cfg["model"].items() if k != "preset"}
    vocab_size = math.ceil(meta["vocab_size"] / 64) * 64
    config = GPTConfig.from_preset(cfg["model"]["preset"], vocab_size=vocab_size, **model_args)
    if config.fused_mlp and device.type == "cuda" and NVMATH_MISSING:
        raise SystemExit(
            "model.fused_mlp needs nvmath-python: pip install -r requirements.txt "
            "(or set model.fused_mlp: false)"
        )
    if config.cudnn_attention and device.type == "cuda":
        if CUDNN_MISSING:
            raise SystemExit(
                "model.cudnn_attention needs nvidia-cudnn-frontend: pip install -r "
                "requirements.txt (or set model.cudnn_attention: false)"
            )
        if torch.cuda.get_device_capability(device) < (8, 0):
            raise SystemExit(
                "model.cudnn_attention needs cuDNN's fused attention, which runs on A100-class "
                "GPUs and newer: set model.cudnn_attention: false"
            )
    raw_model = GPT(config).to(device)
    total = sum(p.numel() for p in raw_model.parameters())
    trainable = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
    log.info(f"parameters: {trainable:,} trainable / {total:,} total")  # R-TRAINABLE
    if trainable == 0:
        raise SystemExit("the model has no trainable parameters")
    flops_per_token = raw_model.flops_per_token()
    # R-DDP-INIT: every rank built the same weights from the same seed; DDP keeps them equal.
    # Compiled, the backward is split into one graph per gradient bucket, so that each bucket's
    # all-reduce starts while the rest runs. 100 MB buckets (torchtitan's) rather than DDP's
    # 25 split it a quarter as often: 1.8% faster on one H100 at gpt2-124m (benchmarks/).
    model = DDP(
        raw_model, device_ids=[local_rank] if device.type == "cuda" else None, bucket_cap_mb=100
    )
    seed_everything(t["seed"] + rank)  # R-RANK-SEED: per-rank randomness (dropout) from here on

    # AdamW; weight decay on matrices (linear and embedding weights), not on biases and norms.
    params = [p for p in raw_model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # Fused: one kernel for the whole update, and it can skip a step on the device (R-NAN-GUARD).
    optimizer = torch.optim.AdamW(groups, lr=t["lr"], betas=(t["beta1"], t["beta2"]), fused=True)

    # R-RESUME: model, optimizer, step, data position and RNG continue where they stopped.
    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": math.inf}
    last_checkpoint = None
    if resume:
        last_checkpoint = find_checkpoint(resume, out_dir)
        try:
            progress = load_checkpoint(last_checkpoint, raw_model, optimizer, device)
        except RuntimeError as err:
            # It is intact (find_checkpoint checked it), so it was saved from another model.
            raise SystemExit(
                f"--resume: checkpoint {last_checkpoint} does not fit this model "
                f"({str(err).strip().splitlines()[-1].strip().rstrip('.')}); resume with the model "
                "section of the config it was saved with"
            ) from None
        log.info(f"resumed from {last_checkpoint} at step {progress['step']}")
    if t["compile"]:
        model = torch.compile(model, mode=t["compile_mode"])

    if cfg["eval"]["only"]:
        val_loss = evaluate(model, val_loader, cfg["eval"]["batches"], device, amp)
        log.info(f"val loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f})")
        return

    def save(path: Path) -> None:
        state = make_checkpoint(raw_model, optimizer, progress, cfg, device)
        if state is not None:  # rank 0
            save_atomic(state, path)

    accum = t["grad_accum_steps"]
    tokens_per_step = t["batch_size"] * block_size * accum * world_size
    log.info(f"{tokens_per_step:,} tokens per optimizer step")
    stop = stop_on_signal(log)
    stream = batches(train_loader, progress["epoch"], progress["batch_in_epoch"])
    step = progress["step"]
    watchdog = Watchdog(t, step, device, grads_may_overflow=scaler.is_enabled())
    intervals = (cfg["logging"]["interval"], cfg["eval"]["interval"], cfg["checkpoint"]["interval"])
    # Throughput is timed between sync points, where the host has waited for the device.
    # Two more sync points time the run's length: steps 3 to 5 of this session, after the
    # first two have compiled the model; the host alone would time itself running ahead.
    timing_points = (step + 2, step + 5)
    window_start, window_step = time.perf_counter(), step
    # Rate and ETA from the first step, counted on the host: the bar never waits for the
    # GPU. Off a terminal (CI, SLURM logs) it is redrawn once a minute, not ten
    # times a second.
    bar = tqdm(
        desc="training",
        total=t["max_steps"],
        initial=step,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 60,
        disable=rank != 0,
    )
    model.train()  # R-TRAIN-EVAL-MODE
    while step < t["max_steps"]:
        lr = lr_at(step, t)
        for group in optimizer.param_groups:  # R-LR-SCHEDULE: every group, every step
            group["lr"] = lr

        # R-STEP-ORDER: zero_grad -> forward -> backward -> (unscale) -> clip -> step.
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for micro_step in range(accum):
            epoch, index, x, y = next(stream)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # R-DEVICE
            # R-GRAD-ACCUM: all-reduce gradients on the last micro-batch only.
            with model.no_sync() if micro_step < accum - 1 else nullcontext():
                with amp:
                    # The model returns the loss: one compiled graph (R-LOSS-SHAPE, model.py).
                    loss = model(x, y) / accum  # R-GRAD-ACCUM: mean over micro-batches
                scaler.scale(loss).backward()
            loss_sum += loss.detach()  # R-ITEM-LOGGING: no graph is kept
            progress["epoch"], progress["batch_in_epoch"] = epoch, index + 1
        scaler.unscale_(optimizer)  # fp16: clip the true gradients (a no-op in bf16)
        # R-GRAD-CLIP: clip after backward, before the step; the norm before clipping is logged.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        # R-NAN-GUARD: fused AdamW skips, on the device, a step whose gradients are not finite.
        optimizer.found_inf = (~torch.isfinite(grad_norm)).float()
        scaler.step(optimizer)  # in fp16, the scaler sets found_inf itself
        scaler.update()
        watchdog.record(loss_sum, grad_norm)
        step += 1
        progress["step"] = step
        bar.update()

        # Sync points: the host waits for the device only to log, evaluate or save.
        if step < t["max_steps"] and step not in timing_points and all(step % i for i in intervals):
            continue
        # One collective per sync point: every rank's loss, stop request and watchdog record.
        stop_requested = torch.tensor(float(stop.is_set()), device=device)
        record = [watchdog.first_nonfinite, watchdog.first_spike]
        mine = torch.stack([loss_sum, grad_norm, stop_requested, *record])
        ranks = [torch.empty_like(mine) for _ in range(world_size)]
        dist.all_gather(ranks, mine)
        losses, norms, stops, nonfinite, spikes = torch.stack(ranks).t().tolist()
        train_loss, norm, stopping = sum(losses) / world_size, norms[0], any(stops)
        nonfinite_at = min(filter(None, nonfinite), default=0)  # the first step on any rank
        spike_at = min(filter(None, spikes), default=0)
        problem = watchdog.verdict(nonfinite_at, spike_at, last_checkpoint)
        if problem:  # R-NAN-GUARD: before anything is logged or saved
            bar.close()
            raise SystemExit(problem)
        seconds_per_step = (time.perf_counter() - window_start) / (step - window_step)
        if step == timing_points[1]:
            steps_left = t["max_steps"] - step if resume else None
            log.info(run_estimate(seconds_per_step, t["max_steps"], steps_left))

        # R-LOG-AFTER-STEP: metrics after the optimizer step, under the global step.
        if step % cfg["logging"]["interval"] == 0:
            tokens_per_s = tokens_per_step / seconds_per_step
            metrics = {
                "train_loss": train_loss,
                "lr": lr,
                "grad_norm": norm,
                "tokens_per_s": tokens_per_s,
                "tflops": flops_per_token * tokens_per_s / 1e12 / world_size,  # per GPU
            }
            if t["peak_tflops"]:  # model FLOPs utilisation, as in nanoGPT
                metrics["mfu"] = metrics["tflops"] / t["peak_tflops"]
            if device.type == "cuda":
                metrics["memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            log.metrics(step, metrics)
        val_loss = None
        if step % cfg["eval"]["interval"] == 0 or step == t["max_steps"]:
            val_loss = evaluate(model, val_loader, cfg["eval"]["batches"], device, amp)
            log.metrics(step, {"train_loss": train_loss, "val_loss": val_loss})  # R-OVERFIT-WATCH
        if step % cfg["checkpoint"]["interval"] == 0 or step == t["max_steps"] or stopping:
            # The best checkpoint: the one saved with the lowest validation loss so far.
            best = val_loss is not None and val_loss < progress["best_val_loss"]
            if best:
                progress["best_val_loss"] = val_loss
            last_checkpoint = out_dir / f"ckpt_{step:06d}"
            save(last_checkpoint)
            if rank == 0:
                if best:
                    mark_best(last_checkpoint)
                remove_old_checkpoints(out_dir, cfg["checkpoint"]["keep_last"])
            log.info(f"saved {last_checkpoint}{' (best so far)' if best else ''}")
        if stopping:
            # This rank may stop on another's signal, with its own copy still on the way.
            ignore_repeated_stop_signals()
            bar.close()
            log.info(f"stopped at step {step}; continue with --resume")
            return
        window_start, window_step = time.perf_counter(), step
    bar.close()

    # The trained weights alone, as safetensors (R-SAFE-LOAD).
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(raw_model, options=options)
    if rank == 0:
        save_file(weights, out_dir / "model.safetensors")
    log.info(f"done: {out_dir / 'model.safetensors'}")


def main() -> None:
    cfg, args = load_config()
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("launch with torchrun: bash launch/torchrun.sh (see README.md)")
    stop_with_the_launcher()
    # R-DDP-INIT: NCCL between GPUs; gloo runs the same code on CPUs (tests).
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        train(cfg, args.resume)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    run(main)
