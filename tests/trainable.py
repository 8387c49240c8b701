"""Rendered projects made ready to train their smoke config, as a user would, and the
processes their launchers start. Shared by the launch, SLURM and preemption tests."""

import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

# Offline, one thread per process, CPU only: 2 cores are shared by xdist workers and ranks.
# The interpreter's bin directory first, so launch scripts find its torchrun.
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "CUDA_VISIBLE_DEVICES": "",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "PYTHONUNBUFFERED": "1",
}
SMOKE = "configs/smoke.yaml"


def ready(rendered: Path, target: Path) -> Path:
    """A copy of a rendered project with what its smoke config reads: the tokenized sample
    corpus (pretraining) or the tiny local model (the other tasks)."""
    project = shutil.copytree(rendered, target)
    if (project / "prepare_data.py").is_file():
        command = [sys.executable, "prepare_data.py", "--config", SMOKE]
    else:
        command = [sys.executable, "tests/tiny_model.py", "runs/tiny-model"]
    result = subprocess.run(command, cwd=project, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def output_option(project: Path) -> str:
    """The config key of the project's output directory."""
    pretraining = (project / "prepare_data.py").is_file()
    return "--training.out_dir" if pretraining else "--training.output_dir"


def run_smoke(project: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """One of the project's scripts on its smoke config, as a user runs it: CPU, offline."""
    command = [sys.executable, script, "--config", SMOKE, *args]
    return subprocess.run(
        command, cwd=project, env=ENV, capture_output=True, text=True, timeout=600
    )


def free_port() -> int:
    """A free TCP port in 10000-19999. Below the kernel's ephemeral range, which the many
    connections of a concurrent gloo run draw from: one of them could take an ephemeral port
    between this pick and its owner's bind (torchrun would then join whatever answers there).
    Below 20000, where launch/slurm.sbatch puts a job's rendezvous (20000 + job id % 10000),
    as it does for the SLURM tests' jobs while other tests run beside them."""
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10_000, min(20_000, ephemeral_start))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def rendezvous() -> dict[str, str]:
    """launch/torchrun.sh's environment for a rendezvous of its own: port and run id."""
    port = free_port()
    return {"MASTER_PORT": str(port), "RDZV_ID": f"test-{port}"}


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun's workers live in their own sessions)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process has exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
