"""Two torchrun agents on this machine form one 2-node job through the generated
launch/torchrun.sh (c10d rendezvous, gloo) and train the smoke config (R-MULTI-NODE)."""

import json
import subprocess
from pathlib import Path

import pytest
from trainable import ENV, SMOKE, output_option, ready, rendezvous


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["pretraining", "sft"])
def test_two_nodes_rendezvous_and_train_as_one_job(render, tmp_path: Path, task: str) -> None:
    project = ready(render(task, "multi-gpu", nodes=2), tmp_path / "project")
    out = tmp_path / "out"
    # One process per "node": the job has 2 ranks, one launched by each agent.
    env = {**ENV, "NPROC_PER_NODE": "1", **rendezvous(), "CONFIG": SMOKE}
    command = ["bash", "launch/torchrun.sh", output_option(project), str(out)]
    nodes = [
        subprocess.Popen(
            command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=600)[0].decode())
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-6000:]
    if task == "pretraining":
        assert "rank 0 of 2" in "".join(outputs)
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "lr" in r] == list(range(1, 9))
        assert (out / "ckpt_000008" / "manifest.json").is_file()
    else:
        assert "2 processes" in "".join(outputs)
        state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
        assert len([e for e in state["log_history"] if "loss" in e]) == 6
        assert (out / "final" / "model.safetensors").is_file()
