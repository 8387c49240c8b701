"""Training survives what clusters do to it (R-SAFE-INTERRUPT), tried on real processes:
a scheduler's SIGTERM to the launcher, a SIGKILLed launcher, a checkpoint cut short."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainable import ENV, SMOKE, alive, children, output_option, ready, rendezvous

TORCHRUN_GRACE_S = 30  # how long torchrun lets its workers stop before it SIGKILLs them
LONG_RUN = {
    "pretraining": ["--training.max_steps", "100000", "--training.lr_decay_steps", "100000"]
    + ["--checkpoint.interval", "100000", "--eval.interval", "100000"],
    "sft": ["--training.max_steps", "100000", "--training.eval_steps", "100000"]
    + ["--training.save_steps", "100000"],
}


def launch(project: Path, out: Path, log: Path) -> subprocess.Popen:
    """bash launch/torchrun.sh on 2 CPU processes, training far longer than the test waits."""
    env = {**ENV, "NPROC_PER_NODE": "2", **rendezvous(), "CONFIG": SMOKE}
    task = "pretraining" if (project / "prepare_data.py").is_file() else "sft"
    command = ["bash", "launch/torchrun.sh", output_option(project), str(out), *LONG_RUN[task]]
    return subprocess.Popen(
        command, cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_until_training(launcher: subprocess.Popen, log: Path) -> list[int]:
    """Wait for the first logged step; return the workers (torchrun's children)."""
    deadline = time.monotonic() + 300
    while not ("train_loss" in log.read_text() or "'loss'" in log.read_text()):
        assert launcher.poll() is None, log.read_text()[-6000:]
        assert time.monotonic() < deadline, log.read_text()[-6000:]
        time.sleep(0.5)
    (torchrun,) = children(launcher.pid)
    workers = children(torchrun)
    assert len(workers) == 2, log.read_text()[-6000:]
    return workers


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["pretraining", "sft"])
def test_sigterm_to_the_launcher_saves_on_every_rank_and_exits_0_after_a_slow_step(
    render, tmp_path: Path, task: str
) -> None:
    project = ready(render(task, "multi-gpu"), tmp_path / "project")
    out, log = tmp_path / "out", tmp_path / "launcher.log"
    launcher = launch(project, out, log)
    try:
        workers = wait_until_training(launcher, log)
        # A step that outlasts torchrun's grace period: the workers stall (as on a slow
        # file system) while the scheduler's SIGTERM arrives, and go on after the grace.
        for worker in workers:
            os.kill(worker, signal.SIGSTOP)
        signalled = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        time.sleep(TORCHRUN_GRACE_S + 5)
        for worker in workers:
            os.kill(worker, signal.SIGCONT)
        launcher.wait(timeout=300)
    finally:
        launcher.kill()
    output = log.read_text()
    assert launcher.returncode == 0, output[-6000:]
    assert time.monotonic() - signalled > TORCHRUN_GRACE_S
    assert "Traceback" not in output and "SignalException" not in output, output[-6000:]
    assert "continue with --resume" in output
    if task == "pretraining":
        (saved,) = out.glob("ckpt_*")
        assert (saved / "manifest.json").is_file()
        assert f"saved {saved}" in output
    else:
        (saved,) = out.glob("checkpoint-*")
        # Every rank wrote its share (its RNG state); the checksums, written last, are there.
        assert {p.name for p in saved.glob("rng_state_*.pth")} == {
            "rng_state_0.pth",
            "rng_state_1.pth",
        }
        assert (saved / "checksums.json").is_file()


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["pretraining", "sft"])
def test_sigkill_of_the_launcher_stops_its_workers_within_seconds(
    render, tmp_path: Path, task: str
) -> None:
    project = ready(render(task, "multi-gpu"), tmp_path / "project")
    log = tmp_path / "launcher.log"
    launcher = launch(project, tmp_path / "out", log)
    try:
        workers = wait_until_training(launcher, log)
        launcher.kill()  # SIGKILL: the script cannot pass anything on
        launcher.wait()
        deadline = time.monotonic() + 10
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in workers if alive(pid)]
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their launcher by 10 s\n{log.read_text()[-4000:]}"
    assert "the launcher is gone" in log.read_text()


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["pretraining", "sft"])
def test_copies_of_sigterm_that_keep_coming_until_the_workers_exit_do_not_fail_the_run(
    render, tmp_path: Path, task: str
) -> None:
    """A scheduler signals every process and the launcher passes its own signal on, late on a
    busy machine: a copy can land as a worker exits, when Python has given SIGTERM its
    default action back. Here SIGTERM goes to the workers every 10 ms from the first one
    until the launcher exits; the stop stays clean."""
    project = ready(render(task, "multi-gpu"), tmp_path / "project")
    out, log = tmp_path / "out", tmp_path / "launcher.log"
    launcher = launch(project, out, log)
    try:
        workers = wait_until_training(launcher, log)
        while launcher.poll() is None:
            for worker in filter(alive, workers):
                with contextlib.suppress(ProcessLookupError):  # it exited since
                    os.kill(worker, signal.SIGTERM)
            time.sleep(0.01)
    finally:
        launcher.kill()
    output = log.read_text()
    assert launcher.returncode == 0, output[-6000:]
    assert "killed by SIGTERM" not in output and "Traceback" not in output, output[-6000:]
    assert output.count("SIGTERM: saving a checkpoint after this step") == (
        1 if task == "pretraining" else 2  # rank 0 logs for the loop; every Trainer rank prints
    ), output[-6000:]
    assert "continue with --resume" in output


def train_sft(project: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", "--config", SMOKE, "--training.output_dir", str(out)]
    return subprocess.run(
        [*command, *extra], cwd=project, env=ENV, capture_output=True, text=True, timeout=600
    )


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    path.write_bytes(bytes(data))


def cut_save_short(path: Path) -> None:
    (path.parent / "checksums.json").unlink()  # killed before the save finished


@pytest.fixture(scope="module")
def sft_run(render, tmp_path_factory) -> tuple[Path, Path]:
    """A single-process sft smoke run: checkpoint-4 and checkpoint-6 (the newest)."""
    project = ready(render("sft", "cpu"), tmp_path_factory.mktemp("sft") / "project")
    out = project / "runs" / "first"
    result = train_sft(project, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, out


@pytest.mark.smoke
@pytest.mark.parametrize("damage", [truncate, flip_bytes, cut_save_short], ids=lambda f: f.__name__)
def test_resume_skips_a_damaged_newest_trainer_checkpoint_with_a_warning(
    sft_run, tmp_path: Path, damage
) -> None:
    project, first = sft_run
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", first, out], check=True)
    damage(out / "checkpoint-6" / "model.safetensors")
    result = train_sft(project, out, "--resume", "--training.max_steps", "8")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"skipping {out / 'checkpoint-6'}" in result.stderr, result.stderr[-3000:]
    # It continued from checkpoint-4: steps 5-8 were trained again, on top of its history.
    before = json.loads((first / "checkpoint-4" / "trainer_state.json").read_text())
    after = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    done = len(before["log_history"])
    assert after["log_history"][:done] == before["log_history"]
    assert [e["step"] for e in after["log_history"][done:] if "loss" in e] == [5, 6, 7, 8]
