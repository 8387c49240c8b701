"""`scaffold new`: flags, defaults, errors and the wizard, run as a user would."""

import fcntl
import hashlib
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import copier
import pytest

from scaffold.answers import collect
from scaffold.render import render_project
from scaffold.template import template_root


def scaffold(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI with no terminal attached (as CI does)."""
    return subprocess.run(
        [sys.executable, "-m", "scaffold", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def assert_usage_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without the warning a checkout with uncommitted templates prints."""
    return [x for x in result.stderr.splitlines() if not x.startswith("scaffold: warning:")]


def directory_modes(root: Path) -> dict[str, int]:
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    return {str(p.relative_to(root)): p.stat().st_mode & 0o7777 for p in dirs}


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_new_with_all_flags_renders_without_prompting(tmp_path):
    result = scaffold(
        "new", "my-run", "--hardware", "multi-gpu", "--gpus", "4", "--nodes", "2",
        "--task", "pretraining", "--scale", "small", "--yes", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = (tmp_path / "my-run" / ".copier-answers.yml").read_text()
    for line in ("project_name: my-run", "hardware: multi-gpu", "gpus: 4", "nodes: 2"):
        assert line in answers
    assert (tmp_path / "my-run" / "launch" / "torchrun.sh").is_file()


def test_without_a_terminal_a_missing_answer_takes_its_default(tmp_path):
    result = scaffold("new", "run", "--task", "classification", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers = (tmp_path / "run" / ".copier-answers.yml").read_text()
    assert "scale: small" in answers


def test_without_a_terminal_a_missing_answer_with_no_default_names_its_flag(tmp_path):
    result = scaffold("new", "run", "--hardware", "cpu", cwd=tmp_path)
    assert_usage_error(result, "--task")
    assert not (tmp_path / "run").exists()


def test_unknown_choice_is_a_usage_error(tmp_path):
    result = scaffold("new", "run", "--task", "pretrain", "--yes", cwd=tmp_path)
    assert_usage_error(result, "invalid choice", "pretraining")


@pytest.mark.parametrize(
    "args",
    [["new"], ["new", "run", "--bogus"], ["new", "run", "--gpus", "two"], []],
    ids=["missing-name", "unknown-flag", "not-a-number", "no-command"],
)
def test_a_usage_error_is_one_line_that_points_at_help(tmp_path, args):
    result = scaffold(*args, cwd=tmp_path)
    assert_usage_error(result, "error:", "--help`")
    assert len(error_lines(result)) == 1, result.stderr
    assert "usage:" not in result.stderr


@pytest.mark.parametrize("hardware", ["cpu", "mps", "cuda"])
def test_a_flag_that_does_not_apply_to_the_hardware_is_refused(tmp_path, hardware):
    # copier.yml asks --gpus only for multi-gpu; silently dropping a typed flag would mislead.
    result = scaffold(
        "new", "run", "--task", "sft", "--hardware", hardware, "--gpus", "4", "--yes", cwd=tmp_path
    )  # fmt: skip
    assert_usage_error(result, "--gpus does not apply", f"--hardware {hardware}", "multi-gpu")
    assert len(error_lines(result)) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["parent-is-a-file", "under-proc"])
def test_a_place_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, where):
    if where == "parent-is-a-file":
        (tmp_path / "notes.txt").write_text("mine\n")
        name = "notes.txt/run"
    else:  # Linux's /proc takes no new directories, even from root
        name = "/proc/scaffold-test-run"
    result = scaffold("new", name, "--task", "sft", "--yes", cwd=tmp_path)
    assert_usage_error(result, "cannot create")
    assert len(error_lines(result)) == 1, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == (["notes.txt"] if "file" in where else [])


def broken_template(root: Path) -> Path:
    """A copy of the template, as a tagged git repository, whose README does not compile."""
    root.mkdir()
    shutil.copy(template_root() / "copier.yml", root / "copier.yml")
    shutil.copytree(template_root() / "templates", root / "templates")
    with (root / "templates" / "README.md.jinja").open("a") as readme:
        readme.write("{{ project_name | no_such_filter }}\n")
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "broken"],
        ["tag", "v0.1.0"],
    ):
        subprocess.run(["git", *command], cwd=root, check=True)
    return root


def test_a_template_error_is_one_paragraph_and_debug_shows_the_traceback(tmp_path):
    template = broken_template(tmp_path / "template")
    env = {**os.environ, "SCAFFOLD_TEMPLATE": str(template)}
    result = scaffold("new", "run", "--task", "sft", "--yes", cwd=tmp_path, env=env)
    assert_usage_error(result, "the template failed to render", "no_such_filter", "--debug")
    assert len(error_lines(result)) == 1, result.stderr
    assert not (tmp_path / "run").exists()

    debug = scaffold("new", "run", "--task", "sft", "--yes", "--debug", cwd=tmp_path, env=env)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "no_such_filter" in debug.stderr


@pytest.mark.parametrize("name", ["9lives", "my run", "bad/..", "-dash", "a" * 65])
def test_invalid_project_name_is_refused(tmp_path, name):
    result = scaffold("new", name, "--task", "pretraining", "--yes", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "hardware, scale, suggestion",
    [
        ("cpu", "medium", "--scale small"),
        ("cpu", "large", "--scale small"),
        ("mps", "large", "--scale medium"),
        ("cuda", "large", "--hardware multi-gpu"),
    ],
)
def test_impossible_combination_is_refused_with_what_would_work(
    tmp_path, hardware, scale, suggestion
):
    # R-SCALE-FITS-HW
    result = scaffold(
        "new", "run", "--task", "pretraining", "--hardware", hardware, "--scale", scale,
        "--yes", cwd=tmp_path,
    )  # fmt: skip
    assert_usage_error(result, suggestion)
    assert list(tmp_path.iterdir()) == []


def test_multi_gpu_with_a_single_gpu_in_all_is_refused(tmp_path):
    result = scaffold(
        "new", "run", "--task", "pretraining", "--hardware", "multi-gpu", "--gpus", "1",
        "--yes", cwd=tmp_path,
    )  # fmt: skip
    assert_usage_error(result, "--hardware cuda")


def test_non_empty_target_is_refused_and_left_byte_for_byte_unchanged(tmp_path):
    target = tmp_path / "run"
    (target / "data").mkdir(parents=True)
    (target / "train.py").write_text("# my own work\n")
    (target / "data" / "notes.txt").write_bytes(os.urandom(256))
    before = tree_digest(target)

    result = scaffold("new", "run", "--task", "pretraining", "--yes", cwd=tmp_path)

    assert_usage_error(result, "not empty")
    assert tree_digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_empty_target_directory_is_used(tmp_path):
    (tmp_path / "run").mkdir()
    result = scaffold("new", "run", "--task", "pretraining", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "train.py").is_file()


@pytest.mark.parametrize("hardware", ["cpu", "multi-gpu"])
def test_plain_copier_copy_renders_the_same_project_as_scaffold_new(tmp_path, hardware):
    given = {"task": "pretraining", "hardware": hardware, "scale": "small"}
    scaffold_dir, copier_dir = tmp_path / "a" / "run", tmp_path / "b" / "run"
    # copier fills what was not given from copier.yml's own defaults, as a user's would.
    extra = {"gpus": 2} if hardware == "multi-gpu" else {}
    render_project(collect({"project_name": "run", **given, **extra}), scaffold_dir)
    # HEAD, not the latest tag: both must render the templates of this checkout.
    copier.run_copy(
        str(template_root()),
        copier_dir,
        data={**given, **extra},
        defaults=True,
        quiet=True,
        vcs_ref="HEAD",
    )
    # Only where each recorded its template from differs (scaffold: its template repository).
    for project in (copier_dir, scaffold_dir):
        answers_file = project / ".copier-answers.yml"
        lines = answers_file.read_text().splitlines()
        source = ("_commit:", "_src_path:")
        answers_file.write_text("\n".join(x for x in lines if not x.startswith(source)))
    assert tree_digest(copier_dir) == tree_digest(scaffold_dir)
    # The same permissions too: the project is not made private (mkdtemp's 0700).
    assert directory_modes(scaffold_dir) == directory_modes(copier_dir)


def fake_nvidia_smi(directory: Path, gpus: int) -> Path:
    """A directory holding an `nvidia-smi` that lists `gpus` GPUs, to put first on PATH."""
    directory.mkdir(exist_ok=True)
    fake = directory / "nvidia-smi"
    lines = "\n".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: {i})'" for i in range(gpus))
    fake.write_text(f"#!/bin/sh\n{lines}\n")
    fake.chmod(0o755)
    return directory


def test_hardware_is_detected_from_nvidia_smi_without_importing_torch(tmp_path):
    fake_nvidia_smi(tmp_path, 2)
    code = (
        "import sys; from scaffold.detect import detect_hardware; "
        "print(detect_hardware(), 'torch' in sys.modules)"
    )
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "('multi-gpu', 2) False"


class Terminal:
    """The CLI on a real pseudo-terminal, driven key by key like a person would."""

    def __init__(self, args: list[str], cwd: Path, columns: int = 200, path: Path | None = None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.chdir(cwd)
            os.environ["TERM"] = "xterm"
            if path is not None:  # e.g. a fake nvidia-smi first
                os.environ["PATH"] = f"{path}:{os.environ['PATH']}"
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            os.execv(sys.executable, [sys.executable, "-m", "scaffold", *args])
        # A wide screen by default, so long choices are not cut off; tests of wrapping narrow it.
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.screen = ""

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            assert time.monotonic() < deadline, f"never saw {text!r}; screen:\n{self.screen}"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    break

    def press(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_code(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.wait_for("", timeout=0.1)
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    os.read(self.fd, 65536)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError("the CLI did not exit")


def test_wizard_asks_what_flags_leave_out_then_renders(tmp_path):
    term = Terminal(["new", "run", "--hardware", "cpu", "--scale", "small"], tmp_path)
    term.wait_for("What will it do?")
    term.press("\r")  # the first choice: classification
    term.wait_for("Model")
    term.press("\r")
    term.wait_for("Training data")
    term.press("\r")
    term.wait_for("Render this project?")
    term.press("\r")
    assert term.exit_code() == 0
    assert "task: classification" in (tmp_path / "run" / ".copier-answers.yml").read_text()


def test_wizard_greys_out_scales_the_hardware_cannot_run(tmp_path):
    # R-SCALE-FITS-HW, interactively: the reason is shown next to the choice.
    term = Terminal(["new", "run", "--hardware", "cpu", "--task", "pretraining"], tmp_path)
    term.wait_for("Model scale")
    term.wait_for("does not fit on a CPU")
    term.press("\x03")
    assert term.exit_code() == 130


def test_ctrl_c_in_the_wizard_leaves_no_directory_behind(tmp_path):
    term = Terminal(["new", "run"], tmp_path)
    term.wait_for("Where will it train?")
    term.press("\x03")
    assert term.exit_code() == 130
    assert list(tmp_path.iterdir()) == []


def test_wizard_asks_again_after_an_impossible_gpus_times_nodes_combination(tmp_path):
    term = Terminal(
        ["new", "run", "--hardware", "multi-gpu", "--task", "pretraining", "--scale", "small"],
        tmp_path,
    )
    term.wait_for("GPUs per node")
    term.press(ERASE + "1\r")
    term.wait_for("Number of nodes")
    term.press("\r")  # 1 node x 1 GPU: not multi-gpu
    term.wait_for("at least 2 GPUs in all")
    term.wait_for("Try again.")
    term.screen = ""
    term.wait_for("Number of nodes")  # asked again; the answers so far are kept
    term.press(ERASE + "2\r")
    for question in ("Model", "Training data", "Memory per GPU"):
        term.wait_for(question)
        term.press("\r")
    term.wait_for("Render this project?")
    term.press("\r")
    assert term.exit_code() == 0
    answers = (tmp_path / "run" / ".copier-answers.yml").read_text()
    assert "gpus: 1" in answers and "nodes: 2" in answers


@pytest.mark.parametrize("columns", [80, 110])
def test_wizard_wraps_the_reasons_for_greyed_out_scales_to_the_terminal(tmp_path, columns):
    # R-SCALE-FITS-HW: the reason is readable whole, not cut off at the screen's edge.
    term = Terminal(
        ["new", "run", "--hardware", "cpu", "--task", "pretraining"], tmp_path, columns=columns
    )
    term.wait_for("Model scale")
    term.wait_for("does not fit on a CPU")
    term.wait_for("--hardware cuda / multi-gpu.")  # the end of each reason
    term.press("\x03")
    assert term.exit_code() == 130
    reason_lines = [x for x in visible_lines(term.screen) if "weeks there" in x]
    assert reason_lines and all(len(x) <= columns for x in visible_lines(term.screen))


def test_wizard_says_which_hardware_it_detected(tmp_path):
    smi = fake_nvidia_smi(tmp_path / "bin", 2)
    term = Terminal(["new", "run"], tmp_path, path=smi)
    term.wait_for("Where will it train?")
    term.wait_for("(detected: 2 NVIDIA GPUs)")
    term.press("\r")  # the detected default: multi-gpu
    term.wait_for("GPUs per node")
    term.wait_for("(detected: 2 on this machine)")
    term.press("\x03")
    assert term.exit_code() == 130


@pytest.mark.parametrize(
    "task, question",
    [
        ("pretraining", "Model architecture to train from scratch (a preset: gpt2-124m"),
        ("sft", "Model (Hugging Face id or local path)"),
    ],
)
def test_wizard_words_the_model_question_for_the_task(tmp_path, task, question):
    term = Terminal(
        ["new", "run", "--hardware", "cpu", "--task", task, "--scale", "small"], tmp_path
    )
    term.wait_for(question)
    term.press("\x03")
    assert term.exit_code() == 130


# Backspaces enough to clear a pre-filled default in a text prompt.
ERASE = "\x7f" * 8
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def visible_lines(screen: str) -> list[str]:
    """The text lines the terminal showed, escape sequences removed."""
    return [line.rstrip() for line in ANSI.sub("\n", screen).replace("\r", "\n").split("\n")]
