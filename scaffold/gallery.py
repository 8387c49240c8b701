"""The docs gallery: Markdown pages built from generated_samples/.

    python -m scaffold.gallery OUT_DIR [--samples DIR]   # write the pages, to read or debug

The docs build does not use committed copies: mkdocs.yml loads this file as a hook and
`on_files` adds the pages at build time, so the gallery cannot drift from the samples
(which tests/test_samples.py keeps equal to what the templates render).

Pages (paths relative to the docs directory):
  gallery/index.md                   every task x hardware x scale, linked to its sample
  gallery/<task>/index.md            what changes between hardware targets, as diffs
  gallery/<task>/<hardware>.md       one sample: answers, file tree, key files
"""

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from scaffold import questions as qs
from scaffold.catalog import combinations

ANSWERS_FILE = ".copier-answers.yml"
# Shown in full on a sample's page; everything else is in its file tree.
KEY_FILES = ("README.md", "train.py", "infer.py", "configs/*.yaml", "launch/*")
# Each hardware target is diffed against the one it grows from; targets not named here
# (a new one in copier.yml) are diffed against the previous one in copier.yml's order.
DIFF_BASE = {"mps": "cpu", "cuda": "cpu", "multi-gpu": "cuda"}
LANGUAGES = {
    ".py": "python",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".md": "markdown",
    ".sh": "bash",
    ".sbatch": "bash",
    ".toml": "toml",
    ".jsonl": "json",
}

Sample = dict[str, Any]  # answers + "dir": Path


def load_samples(samples: Path) -> list[Sample]:
    """Every rendered sample under `samples`, in copier.yml's task and hardware order."""
    found = []
    for answers_file in sorted(samples.glob(f"*/{ANSWERS_FILE}")):
        answers = yaml.safe_load(answers_file.read_text()) or {}
        found.append({**answers, "dir": answers_file.parent})
    tasks, hardware = qs.question("task").values, qs.question("hardware").values
    return sorted(found, key=lambda s: (tasks.index(s["task"]), hardware.index(s["hardware"])))


def pages(samples: Path) -> dict[str, str]:
    """Docs-relative path -> Markdown, for every gallery page."""
    loaded = load_samples(samples)
    result = {"gallery/index.md": index_page(loaded)}
    by_task: dict[str, list[Sample]] = {}
    for sample in loaded:
        by_task.setdefault(sample["task"], []).append(sample)
        result[sample_page_path(sample)] = sample_page(sample)
    for task, task_samples in by_task.items():
        result[f"gallery/{task}/index.md"] = task_page(task, task_samples)
    return result


def sample_page_path(sample: Sample) -> str:
    return f"gallery/{sample['task']}/{sample['hardware']}.md"


def index_page(samples: list[Sample]) -> str:
    rendered = {(s["task"], s["hardware"]) for s in samples}
    lines = [
        "# Template gallery",
        "",
        "Every task and hardware target `scaffold new` knows, with the scales each accepts",
        "(as `scaffold list` prints them, from `copier.yml`). Linked combinations have a",
        "sample rendered at small scale, exactly as `scaffold new` writes it; the task",
        "links show what changes between hardware targets.",
        "",
        "| task | hardware | scales | sample |",
        "|---|---|---|---|",
    ]
    for combo in combinations():
        scales = ", ".join(combo.scales)
        if (combo.task, combo.hardware) in rendered:
            link = f"[{combo.task} on {combo.hardware}]({combo.task}/{combo.hardware}.md)"
            task = f"[{combo.task}]({combo.task}/index.md)"
        else:
            link, task = "—", combo.task
        lines.append(f"| {task} | `{combo.hardware}` | {scales} | {link} |")
    if not samples:
        lines += ["", "No samples are rendered yet (`python -m scaffold.samples`)."]
    return "\n".join(lines) + "\n"


def sample_page(sample: Sample) -> str:
    root: Path = sample["dir"]
    # The flags in copier.yml's question order (the answers file is sorted by name).
    flags = [f"{q.flag} {sample[q.name]}" for q in qs.questions() if q.name in sample]
    flags = [flag for flag in flags if not flag.startswith("--project-name ")]
    command = " \\\n    ".join([f"scaffold new {sample['project_name']}", *flags, "--yes"])
    lines = [
        f"# {sample['task']} on {sample['hardware']}",
        "",
        f"[All hardware targets for {sample['task']}, as diffs](index.md) ·"
        " [Gallery](../index.md) ·"
        " [Measured at real size on GPUs](../../verified.md)",
        "",
        "Rendered with:",
        "",
        fenced(command + "\n", "bash"),
        "",
        "## Files",
        "",
        fenced(file_tree(root), "text"),
        "",
        "## Key files",
        "",
    ]
    for path in key_files(root):
        # Content tabs (pymdownx.tabbed): one tab per file keeps long files browsable.
        lines.append(f'=== "{path}"')
        lines.append("")
        lines.append(indent(fenced(read_text(root / path), language(path))))
        lines.append("")
    return "\n".join(lines)


def task_page(task: str, samples: list[Sample]) -> str:
    by_hardware = {s["hardware"]: s for s in samples}
    lines = [
        f"# {task}: what changes between hardware targets",
        "",
        "Each section is the unified diff from one sample to the next (small scale;"
        " multi-gpu: the sample's GPU count). Only what the hardware needs changes:"
        " no dead branches for the targets a project does not run on.",
        "",
        "Samples: "
        + " · ".join(f"[{hw}]({hw}.md)" for hw in by_hardware)
        + " · [Gallery](../index.md)",
        "",
    ]
    for base, target in diff_steps(list(by_hardware)):
        lines += hardware_diff(by_hardware[base], by_hardware[target])
    if len(by_hardware) < 2:
        lines.append("Only one hardware target is rendered for this task so far.")
    return "\n".join(lines) + "\n"


def diff_steps(hardware: list[str]) -> list[tuple[str, str]]:
    """(base, target) pairs: cpu -> mps, cpu -> cuda, cuda -> multi-gpu, ..."""
    order = qs.question("hardware").values
    steps = []
    for target in hardware:
        earlier = [hw for hw in order[: order.index(target)] if hw in hardware]
        base = DIFF_BASE.get(target)
        if base not in hardware:
            base = earlier[-1] if earlier else None
        if base is not None:
            steps.append((base, target))
    return steps


def hardware_diff(base: Sample, target: Sample) -> list[str]:
    a, b = base["dir"], target["dir"]
    files_a, files_b = set(relative_files(a)), set(relative_files(b))
    lines = [f"## {base['hardware']} → {target['hardware']}", ""]
    changed = []
    # The answers file differs in every pair (it records the answers): noise, not code.
    for path in sorted((files_a | files_b) - {ANSWERS_FILE}):
        # The samples' project names differ (they are named after the combination);
        # that is not a hardware difference, so compare with the names aligned.
        old = read_text(a / path) if path in files_a else ""
        old = old.replace(base["project_name"], target["project_name"])
        new = read_text(b / path) if path in files_b else ""
        if old == new:
            continue
        diff = difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{base['hardware']}/{path}" if path in files_a else "/dev/null",
            tofile=f"{target['hardware']}/{path}" if path in files_b else "/dev/null",
        )
        status = "added" if path not in files_a else "removed" if path not in files_b else "changed"
        changed.append((path, status, "".join(diff)))
    if not changed:
        return lines + ["No file differs.", ""]
    lines += [f"- `{path}` ({status})" for path, status, _ in changed] + [""]
    for path, status, diff in changed:
        lines += [f"### `{path}` ({status})", "", fenced(diff, "diff"), ""]
    return lines


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def key_files(root: Path) -> list[str]:
    found: list[str] = []
    for pattern in KEY_FILES:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and str(path.relative_to(root)) not in found:
                found.append(str(path.relative_to(root)))
    return found


def file_tree(root: Path) -> str:
    """An indented tree of every file, directories first, like `tree`."""
    lines = [f"{root.name}/"]

    def walk(directory: Path, prefix: str) -> None:
        entries = sorted(directory.iterdir(), key=lambda p: (p.is_file(), p.name))
        for i, entry in enumerate(entries):
            last = i == len(entries) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{entry.name}{'/' * entry.is_dir()}")
            if entry.is_dir():
                walk(entry, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines) + "\n"


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return f"(binary file, {path.stat().st_size} bytes)\n"


def language(path: str) -> str:
    return LANGUAGES.get(Path(path).suffix, "text")


def fenced(text: str, lang: str) -> str:
    # Longer than any backtick run inside (a README has its own ``` blocks).
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    if not text.endswith("\n"):
        text += "\n"
    return f"{fence}{lang}\n{text}{fence}"


def indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.split("\n"))


def title(question: str, value: str) -> str:
    """copier.yml's label for a choice, without its parenthesis: sft -> Supervised fine-tuning."""
    label = next(k for k, v in qs.question(question).choices.items() if v == value)
    return label.split(" (")[0].strip()


def nav(samples: Path) -> list[Any]:
    """The gallery's nav section: the index, then a section per task titled from copier.yml
    (not from directory names), its diff page first, then one page per hardware target."""
    loaded = load_samples(samples)
    tasks = list(dict.fromkeys(s["task"] for s in loaded))
    sections: list[Any] = ["gallery/index.md"]
    for task in tasks:
        pages_of_task: list[Any] = [f"gallery/{task}/index.md"]
        pages_of_task += [
            {title("hardware", s["hardware"]): sample_page_path(s)}
            for s in loaded
            if s["task"] == task
        ]
        sections.append({title("task", task): pages_of_task})
    return sections


def on_config(config: Any) -> Any:
    """mkdocs hook: expand the nav's `Gallery: gallery/index.md` into the gallery's pages."""
    samples = Path(config.config_file_path).parent / "generated_samples"
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and item.get("Gallery") == "gallery/index.md":
            config.nav[i] = {"Gallery": nav(samples)}
    return config


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook (mkdocs.yml `hooks:`): add the gallery pages to the build."""
    from mkdocs.structure.files import File

    samples = Path(config.config_file_path).parent / "generated_samples"
    for path, text in pages(samples).items():
        files.append(File.generated(config, path, content=text))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the gallery's Markdown pages.")
    parser.add_argument("out", type=Path, help="directory to write gallery/... into")
    parser.add_argument(
        "--samples",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "generated_samples",
        help="rendered samples (default: the checkout's generated_samples/)",
    )
    args = parser.parse_args(argv)
    for path, text in pages(args.samples).items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(target, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
