"""Multi-GPU projects launch with torchrun and SLURM on any number of nodes (R-MULTI-NODE)."""

import os
import shlex
import socket
import subprocess
import sys
import textwrap

import pytest
from combinations import valid_combinations
from trainable import ENV, SMOKE, free_port, ready

MULTI = [c for c in valid_combinations() if c[1] == "multi-gpu" and c[0] != "inference"]


@pytest.mark.parametrize("task, hardware, scale", MULTI, ids=lambda v: v)
def test_torchrun_launcher_takes_rendezvous_from_the_environment(render, task, hardware, scale):
    project = render(task, hardware, scale, gpus=4, nodes=2)
    script = (project / "launch" / "torchrun.sh").read_text()
    assert subprocess.run(["bash", "-n", project / "launch" / "torchrun.sh"]).returncode == 0
    args = shlex.split(script.split("exec ", 1)[1].replace("\\\n", " "))
    assert args[:2] == ["python", "launch/torchrun.py"]  # torchrun, failures in one line
    assert 'nnodes="${NNODES:-2}"' in script
    assert "--nnodes" in args and args[args.index("--nnodes") + 1] == "$nnodes"
    assert args[args.index("--nproc_per_node") + 1] == "${NPROC_PER_NODE:-4}"
    assert args[args.index("--rdzv_backend") + 1] == "c10d"
    assert "${MASTER_ADDR:-localhost}" in args[args.index("--rdzv_endpoint") + 1]
    assert "localhost" not in script.replace("${MASTER_ADDR:-localhost}", "")


@pytest.mark.parametrize("task, hardware, scale", MULTI, ids=lambda v: v)
def test_slurm_script_asks_for_the_nodes_and_gpus_and_uses_the_first_node(
    render, task, hardware, scale
):
    project = render(task, hardware, scale, gpus=4, nodes=2)
    path = project / "launch" / "slurm.sbatch"
    script = path.read_text()
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    assert "#SBATCH --nodes=2" in script
    assert "#SBATCH --gpus-per-node=4" in script
    assert "#SBATCH --ntasks-per-node=1" in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script
    assert 'export NNODES="$SLURM_NNODES"' in script
    # A port from the job id only for several nodes; one node's torchrun picks a free one.
    several_nodes = script.split('if [ "$SLURM_NNODES" -gt 1 ]; then', 1)[1].split("fi", 1)[0]
    assert "export MASTER_PORT=" in several_nodes
    assert script.count("MASTER_PORT=") == 1
    assert "bash launch/torchrun.sh" in script.split("srun ", 1)[1]


@pytest.mark.parametrize("task, hardware, scale", MULTI, ids=lambda v: v)
def test_slurm_script_logs_where_it_is_submitted_and_asks_for_a_signal_before_the_limit(
    render, task, hardware, scale
):
    # SLURM creates no directory for --output: runs/ does not exist in a fresh project.
    script = (render(task, hardware, scale) / "launch" / "slurm.sbatch").read_text()
    assert "#SBATCH --output=slurm-%x-%j.out" in script
    assert "#SBATCH --signal=USR1@300" in script
    # srun does not inherit --cpus-per-task from sbatch (SLURM 22.05+).
    assert 'srun --cpus-per-task="$SLURM_CPUS_PER_TASK"' in script


@pytest.mark.parametrize("task, hardware, scale", MULTI, ids=lambda v: v)
def test_torchrun_leaves_stop_signals_to_the_launcher_script(render, task, hardware, scale):
    # R-SAFE-INTERRUPT: torchrun would SIGKILL slow workers after 30 s and exit 1.
    script = (render(task, hardware, scale) / "launch" / "torchrun.sh").read_text()
    assert "trap '' TERM INT USR1" in script
    assert "--signals_to_handle SIGHUP,SIGQUIT" in script
    assert "export LAUNCHER_PID=$$" in script


ENTRY_POINT = textwrap.dedent("""
    import atexit
    import sys
    import threading

    import torch.distributed as dist
    from config import run

    atexit.register(lambda: print("exit hooks ran", flush=True))  # as W&B's last sync

    destroy = dist.destroy_process_group

    def destroy_and_say_so(*args, **kwargs):
        destroy(*args, **kwargs)
        print("process group destroyed", flush=True)

    dist.destroy_process_group = destroy_and_say_so

    def main():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        print("trained", flush=True)
        if sys.argv[1] == "stop":
            raise SystemExit(0)  # as interruptions.py's callback, once a signal's save is done
        if sys.argv[1] == "fail":
            raise SystemExit("a mistake in the config")
        if sys.argv[1] in ("crash", "interrupt"):
            # A thread that never ends, as a communication thread whose peer is gone: the
            # interpreter's teardown would wait for it forever.
            threading.Thread(target=threading.Event().wait).start()
        if sys.argv[1] == "crash":
            raise RuntimeError("Connection reset by peer")
        if sys.argv[1] == "interrupt":
            raise KeyboardInterrupt  # a second Ctrl+C: stop now

    run(main)
    print("the interpreter went on after a finished run", flush=True)
    """)


@pytest.mark.parametrize("task", ["classification", "sft", "dpo", "rlhf", "pretraining"])
def test_finished_multi_gpu_worker_leaves_its_process_group_and_skips_the_teardown(
    render, task, tmp_path
):
    """R-DDP-INIT: a finished worker destroys its process group, runs the exit hooks and exits
    without the interpreter's teardown, where gloo's threads aborted finished runs (SIGABRT)
    now and then, failing the job. So does one that stopped on a signal with SystemExit(0),
    as the Trainer-based tasks' callback does (an sft job signalled by SLURM once aborted so
    in CI). A failed worker reports its mistake as before; one that crashed (its peer died)
    reports the error and exits 1 without the teardown too, which could otherwise keep it
    alive after its launcher; so does one stopped at once by a second Ctrl+C (status 130)."""
    project = render(task, "multi-gpu")
    entry_point = tmp_path / "entry_point.py"
    entry_point.write_text(ENTRY_POINT)
    env = {**os.environ, "PYTHONPATH": str(project)}

    def run(ending: str) -> subprocess.CompletedProcess:
        command = [sys.executable, entry_point, ending]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    finished = run("finish")
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert finished.stdout == "trained\nprocess group destroyed\nexit hooks ran\n", output
    stopped = run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout == finished.stdout, stopped.stdout + stopped.stderr
    failed = run("fail")
    assert failed.returncode == 1 and "a mistake in the config" in failed.stderr, failed.stderr
    crashed = run("crash")  # a hang here (the teardown) times out
    assert crashed.returncode == 1, crashed.stderr
    assert "error: RuntimeError: Connection reset by peer" in crashed.stderr
    assert crashed.stdout == "trained\nexit hooks ran\n", crashed.stdout
    interrupted = run("interrupt")
    assert interrupted.returncode == 130, interrupted.stderr
    assert interrupted.stderr.strip() == "interrupted", interrupted.stderr
    assert interrupted.stdout == "trained\nexit hooks ran\n", interrupted.stdout


@pytest.mark.smoke
def test_one_node_launch_picks_a_free_rendezvous_port(render, tmp_path):
    """R-MULTI-NODE: two runs on one machine (each on its own GPUs) must not meet in one
    rendezvous. On one node, launch/torchrun.sh has torchrun pick a free port, as
    --standalone does: a run trains while torchrun's usual port, 29500, is taken."""
    project = ready(render("pretraining", "multi-gpu"), tmp_path / "project")
    with socket.socket() as other_run:
        other_run.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other_run.bind(("", 29500))
            other_run.listen()
        except OSError:  # something else holds it already: the same test
            pass
        result = subprocess.run(
            ["bash", "launch/torchrun.sh"],
            cwd=project,
            env={**ENV, "NPROC_PER_NODE": "2", "CONFIG": SMOKE},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 of 2" in result.stdout + result.stderr


def test_torchrun_reports_a_failed_rendezvous_in_one_line(render):
    """A node whose peers never join (a wrong MASTER_ADDR, NNODES or port on one of them)
    gets a message naming the rendezvous and what to check, not torchrun's traceback."""
    project = render("sft", "multi-gpu", nodes=2)
    endpoint = f"localhost:{free_port()}"
    command = [
        sys.executable, "launch/torchrun.py", "--nnodes", "2", "--nproc_per_node", "1",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "alone",
        "--rdzv_conf", "join_timeout=3", "train.py", "--config", SMOKE,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=project, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert f"torchrun: no rendezvous at {endpoint}: 2 nodes did not all join in time" in (
        result.stderr
    )
    assert "MASTER_ADDR" in result.stderr and "MASTER_PORT" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
