"""What hardware this machine has, found without importing torch when it is absent."""

import importlib.util
import os
import platform
import shutil
import subprocess


def detect_hardware() -> tuple[str, int]:
    """Return (hardware answer, NVIDIA GPU count) for this machine."""
    gpus = nvidia_gpu_count()
    if gpus >= 2:
        return "multi-gpu", gpus
    if gpus == 1:
        return "cuda", 1
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps", 0
    return "cpu", 0


def nvidia_gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    count = _count_with_nvidia_smi()
    if count is None:
        count = _count_with_torch()
    if visible:
        count = min(count, len(visible.split(",")))
    return count


def _count_with_nvidia_smi() -> int | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def _count_with_torch() -> int:
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return torch.cuda.device_count()
