"""The committed gallery: every task x hardware at small scale.

python -m scaffold.samples            # re-render generated_samples/
"""

import shutil
import sys
import tempfile
from pathlib import Path

from scaffold import questions as qs
from scaffold.answers import collect
from scaffold.catalog import combinations
from scaffold.render import render_project

SAMPLES = Path(__file__).resolve().parent.parent / "generated_samples"
# Where the template came from differs per machine and commit; samples omit it.
MACHINE_SPECIFIC = ("_src_path:", "_commit:")


def sample_combinations() -> list[tuple[str, str]]:
    """(task, hardware) pairs that render at small scale."""
    return [(c.task, c.hardware) for c in combinations() if "small" in c.scales]


def sample_name(task: str, hardware: str) -> str:
    return f"{task}-{hardware}"


def render_sample(task: str, hardware: str, target: Path) -> None:
    given = {"project_name": sample_name(task, hardware), "task": task, "hardware": hardware}
    # Static defaults (copier.yml's), never this machine's detected GPU count.
    given |= {"scale": "small", "gpus": qs.question("gpus").default}
    render_project(collect(given), target)
    answers = target / ".copier-answers.yml"
    lines = answers.read_text().splitlines(keepends=True)
    answers.write_text("".join(line for line in lines if not line.startswith(MACHINE_SPECIFIC)))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "generated_samples"
        staged.mkdir()
        for task, hardware in sample_combinations():
            print(f"rendering {sample_name(task, hardware)}", file=sys.stderr)
            render_sample(task, hardware, staged / sample_name(task, hardware))
        shutil.copy(SAMPLES / "README.md", staged / "README.md")
        shutil.rmtree(SAMPLES)
        shutil.copytree(staged, SAMPLES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
