"""The generated SLURM script runs on a real SLURM (R-MULTI-NODE), and a job it runs survives
the signals SLURM sends ahead of a time limit, on a real preemption and from scancel
(R-SAFE-INTERRUPT).

A one-node cluster on this machine: munged, slurmctld and slurmd from Debian's slurm-wlm
and munge packages (installed here when missing), with a generated CPU-only config whose
partitions preempt one another. The projects are fresh renders, submitted as a user would,
with the GPU and CPU counts overridden for a CPU node (2 processes stand in for the GPUs).
"""

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_preemption import LONG_RUN
from trainable import ENV, free_port, output_option, ready

JOB_DEADLINE_S = 900
FINISHED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
}
TRAINER_LONG_RUN = LONG_RUN["sft"]  # the same Trainer keys in classification and DPO


def install_slurm() -> None:
    """slurm-wlm and munge from Debian's packages, if this machine lacks them."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("SLURM is not installed: run as root on Debian/Ubuntu, or install slurm-wlm")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm", "munge"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# A job in partition urgent preempts the jobs of the others (PreemptMode=CANCEL): at once in
# debug (GraceTime=0, SLURM's default), after GRACE_TIME_S in graceful.
GRACE_TIME_S = 120


def slurm_conf(root: Path, socket_path: Path) -> str:
    host = socket.gethostname().split(".")[0]
    user = getpass.getuser()
    return f"""\
ClusterName=scaffoldtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=graceful Nodes=ALL MaxTime=INFINITE State=UP GraceTime={GRACE_TIME_S}
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2
"""


def logs(root: Path) -> str:
    tails = [f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(root.glob("*.log"))]
    return "\n".join(tails)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A running one-node SLURM; yields the environment that reaches it. The daemons are
    stopped by PID at the end."""
    install_slurm()
    root = tmp_path_factory.mktemp("slurm")
    for name in ("state", "spool"):
        (root / name).mkdir()
    munge = root / "munge"
    munge.mkdir(mode=0o700)
    (munge / "munge.key").write_bytes(os.urandom(1024))
    (munge / "munge.key").chmod(0o600)
    socket_path = munge / "munge.socket"
    (root / "slurm.conf").write_text(slurm_conf(root, socket_path))
    env = {**ENV, "SLURM_CONF": str(root / "slurm.conf")}

    daemons: list[subprocess.Popen] = []

    def start(*command: str) -> None:
        out = (root / f"{Path(command[0]).name}.out").open("w")
        daemons.append(
            subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        )

    try:
        start(
            "munged", "--foreground", "--force", f"--socket={socket_path}",
            f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}",
        )  # fmt: skip
        wait_for(socket_path.exists, 30, "munged did not start", root)
        start("slurmctld", "-D", "-i")
        start("slurmd", "-D")

        def node_is_idle() -> bool:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
            )
            return state.stdout.strip() == "idle"

        wait_for(node_is_idle, 60, "the SLURM node did not come up", root)
        yield env
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def wait_for(condition, seconds: float, failure: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{failure}\n{logs(root)}")
        time.sleep(0.5)


def job_fields(job_id: str, env: dict) -> dict[str, str]:
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True
    ).stdout
    return dict(field.split("=", 1) for field in shown.split() if "=" in field)


def submit(project: Path, env: dict, *options: str, partition: str = "debug") -> str:
    """sbatch launch/slurm.sbatch from the project root, as its README says; only the GPU
    and CPU counts differ, for a CPU node."""
    out = project / "runs" / "out"
    command = ["sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1"]
    command += [f"--partition={partition}"]
    command += ["launch/slurm.sbatch", output_option(project), str(out), *options]
    job_env = {**env, "NPROC_PER_NODE": "2", "CONFIG": "configs/smoke.yaml"}
    result = subprocess.run(command, cwd=project, env=job_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(";")[0]


def job_log(project: Path, job: str) -> Path:
    """Where SLURM writes the job's output: the submission directory, a fresh project."""
    return project / f"slurm-demo-{job}.out"


def describe(project: Path, job: str, env: dict) -> str:
    """What to look at when a job went wrong: its record, its log and the daemons' logs."""
    log = job_log(project, job)
    # Per-step loss lines would push an error at the end of a long log out of view.
    lines = read(log).splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(("{'loss'", "step "))]
    output = "".join(kept)[-6000:] or f"no {log.name}"
    root = Path(env["SLURM_CONF"]).parent
    # The job's log last: a long report is cut in its middle, and an error ends the log.
    return f"{job_fields(job, env)}\n{logs(root)}\n--- {log.name}\n{output}"


def read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def assert_trained(project: Path) -> None:
    out = project / "runs" / "out"
    if (project / "prepare_data.py").is_file():
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "lr" in r] == list(range(1, 9))
        assert (out / "ckpt_000008" / "manifest.json").is_file()
        assert (out / "model.safetensors").is_file()
    else:
        state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
        assert len([e for e in state["log_history"] if "loss" in e]) == 6
        assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.smoke
def test_sbatch_trains_a_fresh_pretraining_and_fine_tuning_project(
    slurm, render, tmp_path: Path
) -> None:
    projects = [
        ready(render(task, "multi-gpu"), tmp_path / task) for task in ("pretraining", "sft")
    ]
    jobs = {submit(project, slurm): project for project in projects}
    deadline = time.monotonic() + JOB_DEADLINE_S
    states: dict[str, dict] = {}
    while len(states) < len(jobs) and time.monotonic() < deadline:
        time.sleep(2)
        for job, fields in ((job, job_fields(job, slurm)) for job in jobs):
            if fields.get("JobState") in FINISHED:
                states[job] = fields
    for job, project in jobs.items():
        fields = states.get(job, job_fields(job, slurm))
        assert fields.get("JobState") == "COMPLETED", describe(project, job, slurm)
        assert fields.get("ExitCode") == "0:0", describe(project, job, slurm)
        assert_trained(project)


def wait_until_training(project: Path, job: str, env: dict) -> None:
    """Wait until the job logs a training step (its signal handlers are installed by then)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while not any(mark in read(job_log(project, job)) for mark in ("train_loss", "'loss'")):
        state = job_fields(job, env).get("JobState")
        assert state not in FINISHED, describe(project, job, env)
        assert time.monotonic() < deadline, describe(project, job, env)
        time.sleep(2)


def wait_until_finished(project: Path, job: str, env: dict) -> dict[str, str]:
    """The job's record once it has ended (scontrol keeps it for MinJobAge, 300 s: there is
    no accounting database here for sacct)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while (fields := job_fields(job, env)).get("JobState") not in FINISHED:
        assert time.monotonic() < deadline, describe(project, job, env)
        time.sleep(2)
    return fields


def scancel(job: str, *scope: str, signal: str) -> list[str]:
    return ["scancel", *scope, f"--signal={signal}", job]


# An exclusive job in the partition of the highest priority: SLURM preempts whatever runs.
PREEMPT = ["sbatch", "--partition=urgent", "--exclusive", "--output=/dev/null", "--wrap=true"]


def stop(
    project: Path, job: str, env: dict, command: list[str], *, signal: str, state: str = "COMPLETED"
) -> str:
    """Run `command` (scancel --signal, or a job that preempts this one) while the job trains;
    the job must save, end in `state` with exit code 0:0 and say how to continue. Returns its
    log."""
    wait_until_training(project, job, env)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    fields = wait_until_finished(project, job, env)
    detail = describe(project, job, env)
    assert fields["JobState"] == state, detail
    assert fields["ExitCode"] == "0:0", detail
    output = job_log(project, job).read_text()
    assert f"{signal}: saving a checkpoint after this step" in output, detail
    assert "continue with --resume" in output, detail
    assert "Traceback" not in output and "srun: error" not in output, detail
    return output


def newest_checkpoint(out: Path, prefix: str) -> tuple[Path, int]:
    """The checkpoint directory `<prefix><step>` with the highest step, and its step."""
    steps = {int(p.name.removeprefix(prefix)): p for p in out.glob(f"{prefix}[0-9]*") if p.is_dir()}
    assert steps, f"no {prefix}* in {out}"
    return steps[max(steps)], max(steps)


def assert_saved_by_every_rank(project: Path) -> tuple[Path, int]:
    """The newest checkpoint is complete: written by every rank, its completeness marker last.
    Returns it and its step."""
    out = project / "runs" / "out"
    if (project / "prepare_data.py").is_file():
        saved, step = newest_checkpoint(out, "ckpt_")
        assert (saved / "manifest.json").is_file()  # rank 0 holds the whole DDP state
        return saved, step
    saved, step = newest_checkpoint(out, "checkpoint-")
    ranks = {path.name for path in saved.glob("rng_state_*.pth")}
    assert ranks == {"rng_state_0.pth", "rng_state_1.pth"}
    assert (saved / "checksums.json").is_file()
    return saved, step


def assert_resumed_after(project: Path, first: Path, first_step: int, second_step: int) -> None:
    """The resumed job went on from the step after checkpoint `first`, up to `second_step`:
    no step repeated, none skipped."""
    out = project / "runs" / "out"
    if (project / "prepare_data.py").is_file():
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "lr" in r] == list(range(1, second_step + 1))
    else:
        before = json.loads((first / "trainer_state.json").read_text())["log_history"]
        second = out / f"checkpoint-{second_step}" / "trainer_state.json"
        after = json.loads(second.read_text())["log_history"]
        assert after[: len(before)] == before
        resumed = [entry["step"] for entry in after[len(before) :] if "loss" in entry]
        assert resumed == list(range(first_step + 1, second_step + 1))


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["pretraining", "sft"])
def test_a_job_signalled_by_slurm_saves_on_every_rank_exits_0_and_resumes(
    slurm, render, tmp_path: Path, task: str
) -> None:
    project = ready(render(task, "multi-gpu"), tmp_path / task)
    # What --signal=USR1@300 in launch/slurm.sbatch makes SLURM send ahead of the time
    # limit: SIGUSR1 to every process of the job steps, not to the batch shell.
    job = submit(project, slurm, *LONG_RUN[task])
    stop(project, job, slurm, scancel(job, signal="USR1"), signal="USR1")
    first, first_step = assert_saved_by_every_rank(project)

    # Resubmitted as the log says, it continues from there (R-RESUME); then SIGTERM to the
    # batch shell's whole process group (--full), where srun, which would answer it by
    # SIGKILLing the workers, is not (launch/slurm.sbatch starts it in a session of its own).
    job = submit(project, slurm, *LONG_RUN[task], "--resume")
    output = stop(project, job, slurm, scancel(job, "--full", signal="TERM"), signal="TERM")
    _, second_step = assert_saved_by_every_rank(project)
    assert second_step > first_step
    if task == "pretraining":
        assert f"resumed from {first} at step {first_step}" in output
    assert_resumed_after(project, first, first_step, second_step)


@pytest.mark.smoke
def test_a_signal_to_the_batch_shell_alone_reaches_every_worker(
    slurm, render, tmp_path: Path
) -> None:
    """What --signal=B:USR1@300 sends: launch/slurm.sbatch passes it on to the job steps."""
    project = ready(render("pretraining", "multi-gpu"), tmp_path / "pretraining")
    job = submit(project, slurm, *LONG_RUN["pretraining"])
    stop(project, job, slurm, scancel(job, "--batch", signal="USR1"), signal="USR1")
    assert_saved_by_every_rank(project)


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["classification", "dpo"])
def test_a_preempted_trainer_job_saves_on_every_rank_and_resumes(
    slurm, render, tmp_path: Path, task: str
) -> None:
    project = ready(render(task, "multi-gpu"), tmp_path / task)
    # Preempted with a grace time: SIGTERM to the job steps at once, SIGKILL once the grace
    # time is over. The workers save and exit within it, and the job ends COMPLETED.
    job = submit(project, slurm, *TRAINER_LONG_RUN, partition="graceful")
    stop(project, job, slurm, PREEMPT, signal="TERM")
    first, first_step = assert_saved_by_every_rank(project)

    # Resubmitted with --resume, it continues from there (R-RESUME). Preempted without a grace
    # time: SIGTERM to every process of the job, SIGKILL after KillWait (30 s). The workers
    # save within it; the job ends PREEMPTED.
    job = submit(project, slurm, *TRAINER_LONG_RUN, "--resume")
    stop(project, job, slurm, PREEMPT, signal="TERM", state="PREEMPTED")
    _, second_step = assert_saved_by_every_rank(project)
    assert second_step > first_step
    assert_resumed_after(project, first, first_step, second_step)
