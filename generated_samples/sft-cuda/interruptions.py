"""How a run survives being interrupted (R-SAFE-INTERRUPT).

- SIGTERM or SIGUSR1 (what a scheduler sends on preemption or ahead of a time limit), or
  Ctrl+C: the trainer finishes its step, saves a checkpoint and the process exits 0.
  A second Ctrl+C stops at once; repeated SIGTERMs and SIGUSR1s are ignored.
- Every checkpoint-* directory gets the SHA-256 sums of its files, written last. `--resume`
  skips a newer checkpoint that lacks them or does not match them (a save cut short, a disk
  that filled up) with a warning naming it, and continues from the newest complete one.
"""

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

CHECKSUMS = "checksums.json"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class SaveAndStopOnSignal(TrainerCallback):
    """A stop signal saves a checkpoint at the end of the current step, then exits 0.

    Also writes the checksums of every checkpoint the trainer saves.
    """

    def __init__(self) -> None:
        self.signalled = threading.Event()
        self.stopped = False
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.signalled.is_set():
            raise KeyboardInterrupt  # only a repeated Ctrl+C means "stop now"
        if self.signalled.is_set():
            return
        self.signalled.set()
        ignore_repeated_stop_signals()
        announce(f"{signal.Signals(signum).name}: saving a checkpoint after this step")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        stopping = self.signalled.is_set()
        if stopping:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if args.should_save:
            write_checksums(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if self.stopped:
            if args.should_save:
                print(f"stopped at step {state.global_step}; continue with --resume", flush=True)
            raise SystemExit(0)


def ignore_repeated_stop_signals() -> None:
    """A scheduler's SIGTERM can come more than once (to every process of the job, and
    through a launcher or wrapper script, late when the machine is busy). A copy that lands
    as the process exits would kill it, as Python gives signals their default action back
    then, and turn a clean stop into a failed job: once stopping, SIGTERM and SIGUSR1 are
    ignored."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def announce(message: str) -> None:
    """A line from a signal handler. os.write, not print: the handler runs between two
    bytecodes of the code it interrupted, possibly inside a print to stdout, and a buffered
    stream refuses a second write from the same thread ("reentrant call")."""
    os.write(sys.stdout.fileno(), f"{message}\n".encode())


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_checksums(checkpoint: Path) -> None:
    """The checkpoint's completeness marker: its files' sums, written last and atomically."""
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    sums = {str(p.relative_to(checkpoint)): _sha256(p) for p in files}
    tmp = checkpoint / (CHECKSUMS + ".tmp")
    tmp.write_text(json.dumps(sums, indent=1))
    os.replace(tmp, checkpoint / CHECKSUMS)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it is complete and intact."""
    try:
        sums = json.loads((checkpoint / CHECKSUMS).read_text())
    except FileNotFoundError:
        return f"it has no {CHECKSUMS}: its save did not finish"
    except ValueError:
        return f"its {CHECKSUMS} is unreadable"
    for name, digest in sums.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its checksum (truncated or corrupted)"
    return None


def checkpoint_to_resume(resume: str | None, args: TrainingArguments) -> str | None:
    """The complete checkpoint `--resume [CHECKPOINT]` continues from (None: start afresh).

    `--resume` alone: the newest complete checkpoint-* in output_dir. Newer incomplete or
    corrupt ones are named in a warning and removed, so the run can save those steps again.
    """
    if resume is None:
        return None
    if resume != "latest":
        problem = checkpoint_problem(Path(resume))
        if problem:
            raise SystemExit(f"--resume {resume}: cannot resume from it: {problem}")
        return resume
    output_dir = Path(args.output_dir)
    found = output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
    newest_first = sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)
    for checkpoint in newest_first:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        warnings.warn(f"skipping {checkpoint}: {problem}; trying an older one", stacklevel=2)
        if args.should_save:
            shutil.rmtree(checkpoint, ignore_errors=True)
    raise SystemExit(f"--resume: no complete {PREFIX_CHECKPOINT_DIR}-* in {output_dir}")
