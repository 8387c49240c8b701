"""Smoke test: build a local tokenizer, tokenize the sample corpus, train a tiny GPT for a
few steps, and check logs, checkpoints, an exact resume, and
that damaged checkpoints are caught before they are loaded."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smoke.yaml"
LAUNCH = [sys.executable]
# These tests train on the CPU, where a resumed run must match bit for bit (R-RESUME);
# test_trains_on_the_gpu runs the same config on the GPUs, where there are some.
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def run(script: str, *args: str, env: dict = ENV, **kwargs) -> subprocess.CompletedProcess:
    cmd = [*(LAUNCH if script == "train.py" else [sys.executable]), script, "--config", str(CONFIG)]
    result = subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def train(data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return run("train.py", "--data.out_dir", str(data), "--training.out_dir", str(out), *args)


def train_may_fail(data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [*LAUNCH, "train.py", "--config", str(CONFIG), "--data.out_dir", str(data)]
    cmd += ["--training.out_dir", str(out), *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def same_weights(run: Path, reference: Path) -> bool:
    """The final weights of two runs are equal, bit for bit (R-RESUME)."""
    ours, theirs = load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def records(out: Path, key: str) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if key in r]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tokenizer = root / "tokenizer"
    run("prepare_data.py", "--data.out_dir", str(root), "--data.tokenizer", str(tokenizer))
    assert (tokenizer / "tokenizer.json").is_file()
    return root


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    train(data, out)
    return out


def test_token_files_record_their_dtype(data):
    meta = json.loads((data / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] <= 320
    assert (data / "train.bin").stat().st_size > (data / "val.bin").stat().st_size > 0


def test_losses_are_finite_and_training_learns(full_run):
    losses = [r["train_loss"] for r in records(full_run, "lr")]
    assert [r["step"] for r in records(full_run, "lr")] == list(range(1, 9))
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.5, losses
    val = records(full_run, "val_loss")
    assert [r["step"] for r in val] == [2, 4, 6, 8]
    assert all(math.isfinite(r["val_loss"]) for r in val)


def test_checkpoints_hold_everything_needed_to_resume(full_run):
    val_loss = {r["step"]: r["val_loss"] for r in records(full_run, "val_loss")}
    best = (full_run / "best").resolve()
    assert best.name == f"ckpt_{min(val_loss, key=val_loss.get):06d}"  # a link, not a copy
    kept = {p.name for p in full_run.glob("ckpt_*")}
    assert kept == {"ckpt_000006", "ckpt_000008", best.name}  # keep_last: 2, and the best
    assert (full_run / "model.safetensors").is_file()
    ckpt = torch.load(full_run / "ckpt_000008" / "state.pt", weights_only=True)
    assert {"model", "optimizer", "step", "epoch", "batch_in_epoch", "rng", "config"} <= set(ckpt)
    assert ckpt["step"] == 8 and ckpt["config"]["training"]["max_steps"] == 8
    manifest = json.loads((full_run / "ckpt_000008" / "manifest.json").read_text())
    on_disk = {p.name for p in (full_run / "ckpt_000008").iterdir()} - {"manifest.json"}
    assert set(manifest) == on_disk and all(len(f["sha256"]) == 64 for f in manifest.values())


def test_resumed_run_matches_uninterrupted_run_exactly(data, full_run, tmp_path):
    train(data, tmp_path, "--training.max_steps", "5")
    train(data, tmp_path, "--resume")
    assert [r["step"] for r in records(tmp_path, "lr")] == list(range(1, 9))
    assert same_weights(tmp_path, full_run)


def damage_newest(run: Path, how: str) -> Path:
    """Damage the largest file of the newest checkpoint as a disk or a copy would."""
    newest = run / "ckpt_000008"
    victim = max((p for p in newest.iterdir() if p.name != "manifest.json"), key=os.path.getsize)
    raw = bytearray(victim.read_bytes())
    if how == "truncate":  # a full disk, a copy cut short
        del raw[len(raw) // 2 :]
    else:  # 4 KB of flipped bits in the middle
        middle = len(raw) // 2
        raw[middle : middle + 4096] = bytes(b ^ 0xFF for b in raw[middle : middle + 4096])
    victim.write_bytes(raw)
    return newest


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_resume_skips_a_damaged_newest_checkpoint(data, full_run, tmp_path, how):
    """--resume warns about the damaged newest checkpoint and continues from the one before,
    reaching the same weights; an unfinished save (.tmp) of the killed run is removed."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run, symlinks=True)
    bad = damage_newest(run, how)
    (run / "ckpt_000010.tmp").mkdir()
    (run / "ckpt_000010.tmp" / "state.pt").write_bytes(b"half a checkpoint")
    result = train(data, run, "--resume")
    assert f"skipping checkpoint {bad}" in result.stderr, result.stderr
    assert ("truncated" if how == "truncate" else "checksum") in result.stderr
    assert f"resumed from {run / 'ckpt_000006'}" in result.stdout
    assert not (run / "ckpt_000010.tmp").exists()
    assert same_weights(run, full_run)


def test_resume_from_a_damaged_checkpoint_names_it_and_the_intact_one(data, full_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run, symlinks=True)
    bad = damage_newest(run, "flip")
    result = train_may_fail(data, run, "--resume", str(bad))
    assert result.returncode != 0
    message = f"--resume: checkpoint {bad} is corrupted"
    assert message in result.stderr and str(run / "ckpt_000006") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_resume_from_another_models_checkpoint_says_so(data, full_run, tmp_path):
    checkpoint = full_run / "ckpt_000006"
    result = train_may_fail(data, tmp_path, "--model.block_size", "32", "--resume", str(checkpoint))
    assert result.returncode != 0
    assert f"--resume: checkpoint {checkpoint} does not fit this model" in result.stderr
    assert "model section" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_sigterm_saves_a_checkpoint_and_resume_continues(data, tmp_path):
    cmd = [*LAUNCH, "train.py", "--config", str(CONFIG), "--data.out_dir", str(data)]
    cmd += ["--training.out_dir", str(tmp_path), "--training.max_steps", "100000"]
    cmd += ["--training.lr_decay_steps", "100000", "--checkpoint.interval", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stderr=subprocess.PIPE)
    log = tmp_path / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)  # until training has logged its first step
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    (saved,) = tmp_path.glob("ckpt_*")
    step = torch.load(saved / "state.pt", weights_only=True)["step"]
    train(data, tmp_path, "--training.max_steps", str(step + 2), "--resume", str(saved))
    assert [r["step"] for r in records(tmp_path, "lr")][-2:] == [step + 1, step + 2]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a GPU")
def test_trains_on_the_gpu(data, tmp_path):
    gpu_env = {k: v for k, v in ENV.items() if k != "CUDA_VISIBLE_DEVICES"}
    result = run(
        "train.py", "--data.out_dir", str(data), "--training.out_dir", str(tmp_path), env=gpu_env
    )
    assert "device: cuda" in result.stdout and "CUDA is not available" not in result.stderr
    losses = [r["train_loss"] for r in records(tmp_path, "lr")]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.5, losses
    assert (tmp_path / "model.safetensors").is_file()


def layer_and_gradients(layer: str, preset: str, device: str, **option: bool) -> list:
    """One of a block's layers (model.py's `MLP` or `CausalSelfAttention`) with a model option
    on or off: its output and every gradient (under bf16 autocast on a GPU, where the fused
    kernels run)."""
    sys.path.insert(0, str(ROOT))
    import model

    torch.manual_seed(0)
    config = model.GPTConfig.from_preset(preset, vocab_size=64, block_size=256, **option)
    module = getattr(model, layer)(config).to(device)
    x = torch.randn(4, 256, config.n_embd, device=device, requires_grad=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        out = module(x)
    out.float().pow(2).mean().backward()
    return [out, x.grad, *(p.grad for p in module.parameters())]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fused_mlp_matches_the_unfused_one_on_the_gpu():
    """fused_mlp.py's cuBLASLt matmuls, GELU in their epilogues, against PyTorch's GELU between
    two matmuls: output and every gradient, at gpt2-124m's width, under bf16 autocast."""
    fused, plain = (
        layer_and_gradients("MLP", "gpt2-124m", "cuda", fused_mlp=f) for f in (True, False)
    )
    for a, b in zip(fused, plain, strict=True):
        assert relative_error(a, b) < 1e-2


def test_cudnn_attention_matches_sdpa_on_the_cpu():
    """cudnn_attention.py's CPU kernels (PyTorch's flash attention for the CPU) against the
    model's SDPA path: the same output and gradients, so its autograd wiring is checked here."""
    packed, plain = (
        layer_and_gradients("CausalSelfAttention", "tiny", "cpu", cudnn_attention=p)
        for p in (True, False)
    )
    for a, b in zip(packed, plain, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cudnn_attention_matches_sdpa_on_the_gpu():
    """cudnn_attention.py's cuDNN graphs, dQ/dK/dV written into one packed gradient, against
    PyTorch's SDPA: output and every gradient at gpt2-124m's width, under bf16 autocast."""
    packed, plain = (
        layer_and_gradients("CausalSelfAttention", "gpt2-124m", "cuda", cudnn_attention=p)
        for p in (True, False)
    )
    for a, b in zip(packed, plain, strict=True):
        assert relative_error(a, b) < 1e-2
