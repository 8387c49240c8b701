"""Pretrain a GPT from scratch on Apple Silicon (MPS).

    python train.py --config configs/train.yaml [--section.key value ...] [--resume [CHECKPOINT]]

Reads the token files written by prepare_data.py and writes to `training.out_dir`:
log.jsonl (metrics), ckpt_<step>.pt (the last few), best.pt (lowest validation loss) and,
at the end, model.safetensors. The first Ctrl+C / SIGTERM saves a checkpoint and stops.
"""

import itertools
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from pathlib import Path

# R-MPS: ops MPS lacks run on the CPU; must be set before torch is imported.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Sampler

from config import load_config
from model import GPT, GPTConfig


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


class EpochShuffle(Sampler[int]):
    """A new permutation every epoch, drawn from seed + epoch: a resumed run sees the same
    order as an uninterrupted one, and the global RNG is left alone."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def batches(loader: DataLoader, epoch: int, start: int):
    """Yield (epoch, index, x, y) forever, from micro-batch `start` of `epoch` on."""
    while True:
        loader.sampler.set_epoch(epoch)  # R-DIST-SAMPLER: a new shuffle each epoch
        for i, (x, y) in enumerate(itertools.islice(loader, start, None), start):
            yield epoch, i, x, y
        epoch, start = epoch + 1, 0


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # R-LOSS-SHAPE: (B, T, V) logits against (B, T) targets, flattened to (B*T, V) and (B*T,).
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


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
    model: torch.nn.Module, loader: DataLoader, n_batches: int, device: torch.device
) -> float:
    model.eval()  # R-TRAIN-EVAL-MODE
    losses = []
    for x, y in itertools.islice(loader, n_batches):
        x, y = x.to(device), y.to(device)
        losses.append(lm_loss(model(x), y))
    model.train()
    return torch.stack(losses).mean().item()  # R-ITEM-LOGGING: a Python float


def seed_everything(seed: int) -> None:
    """R-SEED: one seed for Python, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The RNG states as tensors and plain types, so `weights_only=True` can load them."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def save_atomic(state: dict, path: Path) -> None:
    """R-SAFE-INTERRUPT: write to a temp file, then rename, so a crash mid-write never
    leaves a truncated checkpoint behind."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def checkpoints(out_dir: Path) -> list[Path]:
    """ckpt_<step>.pt files, oldest first."""
    return sorted(out_dir.glob("ckpt_*.pt"), key=lambda p: int(p.stem.removeprefix("ckpt_")))


def find_checkpoint(resume: str, out_dir: Path) -> Path:
    """--resume alone means the latest checkpoint in the output dir; else a path."""
    if resume == "latest":
        if not checkpoints(out_dir):
            raise SystemExit(f"--resume: no ckpt_*.pt in {out_dir}")
        return checkpoints(out_dir)[-1]
    if not Path(resume).is_file():
        raise SystemExit(f"--resume: {resume} not found")
    return Path(resume)


def make_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict,
    cfg: dict,
) -> dict:
    """R-FULL-CHECKPOINT: weights, optimizer, progress (step and data position), RNG, config."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        **progress,
        "rng": rng_state(),
        "config": cfg,
    }


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore a checkpoint; return its progress (step, epoch, ...)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # R-SAFE-LOAD
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return {key: ckpt[key] for key in PROGRESS}


# What a checkpoint records about where training stands.
PROGRESS = ("step", "epoch", "batch_in_epoch", "best_val_loss")


class Logger:
    """Metrics to <out_dir>/log.jsonl, and to W&B when `logging.wandb` is on (R-LOG-AFTER-STEP).

    W&B is imported lazily and initialised once, before the first log; when it is not
    installed or cannot start, training goes on with the JSONL log alone.
    """

    def __init__(self, out_dir: Path, cfg: dict):
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
        print(message, flush=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """R-ITEM-LOGGING: Python floats only; json.dumps refuses tensors."""
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)
        if self.wandb is not None:
            self.wandb.log(values, step=step)


def stop_on_signal(log: Logger) -> threading.Event:
    """R-SAFE-INTERRUPT: the first Ctrl+C / SIGTERM finishes the current step, saves a
    checkpoint and exits; a second one stops at once."""
    stop = threading.Event()

    def handler(signum: int, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info(f"{signal.Signals(signum).name}: saving a checkpoint after this step")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def pick_device() -> torch.device:
    """R-DEVICE: the hardware this project was generated for, or the CPU with a warning."""
    if torch.backends.mps.is_available():
        return torch.device("mps")
    warnings.warn("MPS is not available: training on the CPU instead (slow)", stacklevel=2)
    return torch.device("cpu")


def train(cfg: dict, resume: str | None) -> None:
    data, t = cfg["data"], cfg["training"]
    out_dir = Path(t["out_dir"])  # R-OUTPUT-NAME: runs/<project name>
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Logger(out_dir, cfg)
    device = pick_device()
    log.info(f"device: {device}")
    seed_everything(t["seed"])  # R-SEED: before the model is built

    # Data: token files from prepare_data.py, in the dtype they were written with.
    data_dir = Path(data["out_dir"])
    meta = json.loads((data_dir / "meta.json").read_text())
    block_size = cfg["model"]["block_size"]
    train_set = TokenWindows(data_dir / "train.bin", meta["dtype"], block_size)
    val_set = TokenWindows(data_dir / "val.bin", meta["dtype"], block_size)
    train_sampler = EpochShuffle(len(train_set), t["seed"])
    val_sampler = None
    # The loaders draw worker seeds from their own generator, not the global RNG, so a
    # resumed run replays the same random stream (dropout) as an uninterrupted one.
    loader_args = {"generator": torch.Generator()}
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
    raw_model = GPT(config).to(device)
    total = sum(p.numel() for p in raw_model.parameters())
    trainable = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
    log.info(f"parameters: {trainable:,} trainable / {total:,} total")  # R-TRAINABLE
    if trainable == 0:
        raise SystemExit("the model has no trainable parameters")
    flops_per_token = raw_model.flops_per_token()
    model = raw_model

    # AdamW; weight decay on matrices (linear and embedding weights), not on biases and norms.
    params = [p for p in raw_model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=t["lr"], betas=(t["beta1"], t["beta2"]))

    # R-RESUME: model, optimizer, step, data position and RNG continue where they stopped.
    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": math.inf}
    last_checkpoint = None
    if resume:
        last_checkpoint = find_checkpoint(resume, out_dir)
        progress = load_checkpoint(last_checkpoint, raw_model, optimizer)
        log.info(f"resumed from {last_checkpoint} at step {progress['step']}")
    if t["compile"]:
        model = torch.compile(model)

    if cfg["eval"]["only"]:
        val_loss = evaluate(model, val_loader, cfg["eval"]["batches"], device)
        log.info(f"val loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f})")
        return

    def save(path: Path) -> None:
        state = make_checkpoint(raw_model, optimizer, progress, cfg)
        save_atomic(state, path)

    accum = t["grad_accum_steps"]
    tokens_per_step = t["batch_size"] * block_size * accum
    log.info(f"{tokens_per_step:,} tokens per optimizer step")
    stop = stop_on_signal(log)
    stream = batches(train_loader, progress["epoch"], progress["batch_in_epoch"])
    step = progress["step"]
    model.train()  # R-TRAIN-EVAL-MODE
    while step < t["max_steps"]:
        started = time.perf_counter()
        lr = lr_at(step, t)
        for group in optimizer.param_groups:  # R-LR-SCHEDULE: every group, every step
            group["lr"] = lr

        # R-STEP-ORDER: zero_grad -> forward -> backward -> clip -> step.
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for _ in range(accum):
            epoch, index, x, y = next(stream)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # R-DEVICE
            loss = lm_loss(model(x), y) / accum  # R-GRAD-ACCUM: mean over micro-batches
            loss.backward()
            loss_sum += loss.detach()  # R-ITEM-LOGGING: no graph is kept
            progress["epoch"], progress["batch_in_epoch"] = epoch, index + 1
        train_loss, stopping = loss_sum.item(), stop.is_set()
        if not math.isfinite(train_loss):  # R-NAN-GUARD
            raise SystemExit(
                f"loss is {train_loss} at step {step + 1}: stopping. Last good checkpoint: "
                f"{last_checkpoint or 'none yet'}; resume from it with a lower training.lr."
            )
        # R-GRAD-CLIP: clip after backward, before the step; the norm before clipping is logged.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        optimizer.step()
        step += 1
        progress["step"] = step

        # R-LOG-AFTER-STEP: metrics after the optimizer step, under the global step.
        if step % cfg["logging"]["interval"] == 0:
            seconds = time.perf_counter() - started
            tflops = flops_per_token * tokens_per_step / seconds / 1e12
            metrics = {
                "train_loss": train_loss,
                "lr": lr,
                "grad_norm": grad_norm.item(),
                "tokens_per_s": tokens_per_step / seconds,
                "tflops": tflops,  # per device
            }
            if t["peak_tflops"]:  # model FLOPs utilisation, as in nanoGPT
                metrics["mfu"] = metrics["tflops"] / t["peak_tflops"]
            log.metrics(step, metrics)
        if step % cfg["eval"]["interval"] == 0 or step == t["max_steps"]:
            val_loss = evaluate(model, val_loader, cfg["eval"]["batches"], device)
            log.metrics(step, {"train_loss": train_loss, "val_loss": val_loss})  # R-OVERFIT-WATCH
            if val_loss < progress["best_val_loss"]:
                progress["best_val_loss"] = val_loss
                save(out_dir / "best.pt")
        if step % cfg["checkpoint"]["interval"] == 0 or step == t["max_steps"] or stopping:
            last_checkpoint = out_dir / f"ckpt_{step:06d}.pt"
            save(last_checkpoint)
            for old in checkpoints(out_dir)[: -cfg["checkpoint"]["keep_last"]]:
                old.unlink()
            log.info(f"saved {last_checkpoint}")
        if stopping:
            log.info(f"stopped at step {step}; continue with --resume")
            return

    # The trained weights alone, as safetensors (R-SAFE-LOAD).
    save_file(raw_model.state_dict(), out_dir / "model.safetensors")
    log.info(f"done: {out_dir / 'model.safetensors'}")


def main() -> None:
    cfg, args = load_config()
    train(cfg, args.resume)


if __name__ == "__main__":
    main()
