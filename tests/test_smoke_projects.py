"""Each generated project passes its own test suite: real training, on this machine's CPU.

cuda and mps projects fall back to the CPU with a warning (R-DEVICE); multi-gpu projects
run real DDP with `torchrun --nproc_per_node 2` and gloo. The project's own
tests/test_smoke.py asserts the outcomes (finite, moving loss; checkpoints; resume).
"""

import shutil
import subprocess
import sys

import pytest
from combinations import valid_combinations
from trainable import ENV

# Every task x hardware at small scale, and every task at medium scale (its cuda render);
# and pretraining with FSDP2 (multi-gpu, large), whose checkpoints are sharded (DCP).
SMOKE = [c for c in valid_combinations() if c[2] == "small" or c[1:] == ("cuda", "medium")]
SMOKE.append(("pretraining", "multi-gpu", "large"))


@pytest.mark.smoke
@pytest.mark.parametrize("task, hardware, scale", SMOKE, ids=lambda v: v)
def test_generated_project_passes_its_own_smoke_test(render, tmp_path, task, hardware, scale):
    project = tmp_path / "project"
    shutil.copytree(render(task, hardware, scale), project)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "default"],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output and " failed" not in output, output[-3000:]
