"""Which files a `scaffold check` run reads, and which project each belongs to."""

from pathlib import Path

import yaml

SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".venv",
    "venv",
    "env",
    "__pycache__",
    "node_modules",
    "site-packages",
    "build",
    "dist",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
}
ANSWERS_FILE = ".copier-answers.yml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_SUFFIXES = {".yaml", ".yml"}
PYTHON_SUFFIXES = {".py", ".pyi"}


class PathError(Exception):
    """A path given on the command line that cannot be checked."""


def checked_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, the argument it came from) for every Python and YAML file under `paths`, sorted.

    Files given by name are read whatever their suffix, except that files which are
    neither Python nor YAML (a README next to a project, from a shell glob) are passed over.
    """
    found: dict[Path, Path] = {}
    for root in paths:
        if not root.exists():
            raise PathError(f"{root}: no such file or directory")
        if root.is_file():
            if is_python(root) or is_config(root):
                found.setdefault(root, root)
            continue
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).parts[:-1]
            if any(part in SKIPPED_DIRS or part.startswith(".") for part in relative):
                continue
            if path.suffix in PYTHON_SUFFIXES or is_config(path):
                found.setdefault(path, root)
    return sorted(found.items())


def is_python(path: Path) -> bool:
    return path.suffix in PYTHON_SUFFIXES or _has_python_shebang(path)


def is_config(path: Path) -> bool:
    """A YAML file that may configure training (not the answers or pre-commit files)."""
    return path.suffix in CONFIG_SUFFIXES and not path.name.startswith(".")


def _has_python_shebang(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def hardware_of(path: Path, cache: dict[Path, str | None]) -> str | None:
    """The `hardware` answer of the nearest .copier-answers.yml above `path`, if any."""
    directory = path.resolve().parent
    visited = []
    hardware = None
    for candidate in [directory, *directory.parents]:
        if candidate in cache:
            hardware = cache[candidate]
            break
        visited.append(candidate)
        answers = candidate / ANSWERS_FILE
        if answers.is_file():
            hardware = _read_hardware(answers)
            break
        if (candidate / ".git").exists():
            break  # the repository's root: answers above it belong to something else
    for directory in visited:
        cache[directory] = hardware
    return hardware


def _read_hardware(answers: Path) -> str | None:
    try:
        data = yaml.load(answers.read_text(encoding="utf-8"), Loader=LOADER)
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("hardware") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
