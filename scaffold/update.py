"""`scaffold update`: pull template fixes (and answer changes) into a generated project.

A thin wrapper over `copier update`, which re-renders the project's recorded template
version with its recorded answers, diffs that against the project, and merges the diff
into the new version (a three-way merge); what cannot merge is left as conflict markers
or `.rej` files. Around it this module adds what users otherwise trip over: clear
refusals (not a project, not a clean git tree), answer changes validated by copier.yml
like `scaffold new`'s flags, and a summary of what changed, read back from git.
"""

import subprocess
import warnings
from pathlib import Path
from typing import Any, Literal, NamedTuple

import copier
import yaml
from copier.errors import CopierError, CopierWarning
from plumbum import ProcessExecutionError

from scaffold.answers import collect
from scaffold.render import ANSWERS_FILE

Conflict = Literal["inline", "rej"]
# Copier's inline conflict markers start with git's.
MARKER = "<<<<<<< "


class UpdateError(Exception):
    """The update cannot start (or failed before writing); the message says why."""


class Change(NamedTuple):
    status: str  # git's two-letter short status: " M", "??", "D ", ...
    path: str  # relative to the project


class UpdateResult(NamedTuple):
    old_version: str
    new_version: str
    changes: list[Change]
    conflicts: list[str]  # files holding conflict markers, and .rej files


def update_project(
    project: Path,
    given: dict[str, Any],
    *,
    interactive: bool = False,
    conflict: Conflict = "inline",
    vcs_ref: str | None = None,
    skip_answered: bool = False,
    template: str | None = None,
) -> UpdateResult:
    """Update `project` to the template's `vcs_ref` (default: latest version tag).

    `given` holds answers to change (from flags; None means keep). Non-interactive runs
    keep every other recorded answer; interactive ones let Copier ask, recorded answers
    pre-filled (`skip_answered` asks only new questions).
    """
    project = project.absolute()
    recorded = read_answers(project)
    check_git_clean(project)
    changes = {name: value for name, value in given.items() if value is not None}
    if interactive:
        data = changes
    else:
        # Validate the new combination with copier.yml's rules before touching anything,
        # exactly as `scaffold new` would (e.g. --hardware cpu at medium scale is refused).
        kept = {k: v for k, v in recorded.items() if not k.startswith("_")}
        data = collect({**kept, **changes})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CopierWarning)
            with copier.Worker(
                src_path=template,
                dst_path=project,
                data=data,
                defaults=not interactive,
                overwrite=True,
                conflict=conflict,
                vcs_ref=vcs_ref,
                skip_answered=skip_answered,
                quiet=True,
                unsafe=False,
            ) as worker:
                worker.run_update()
    except (CopierError, ProcessExecutionError) as error:
        raise UpdateError(f"copier update failed: {_first_line(error)}") from error
    after = read_answers(project)
    found = changed_files(project)
    return UpdateResult(
        old_version=str(recorded.get("_commit")),
        new_version=str(after.get("_commit")),
        changes=found,
        conflicts=conflicts(project, found),
    )


def read_answers(project: Path) -> dict[str, Any]:
    answers_file = project / ANSWERS_FILE
    if not project.is_dir():
        raise UpdateError(f"{project} is not a directory")
    if not answers_file.is_file():
        raise UpdateError(f"{project} is not a scaffold project (no {ANSWERS_FILE})")
    answers = yaml.safe_load(answers_file.read_text()) or {}
    if not answers.get("_src_path"):
        raise UpdateError(
            f"{ANSWERS_FILE} records no template source (_src_path); pass --template "
            "with the template's git URL or path"
        )
    if not answers.get("_commit"):
        # Without the old version Copier cannot three-way merge: it would overwrite edits.
        raise UpdateError(
            f"{ANSWERS_FILE} records no template version (_commit); add the tag that "
            "rendered this project, e.g. `_commit: v0.1.0`, and commit"
        )
    return answers


def check_git_clean(project: Path) -> None:
    """Copier merges through git: the project must be in a repository with nothing pending."""
    inside = _git(project, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        raise UpdateError(
            f"{project} is not in a git repository; copier update merges through git: "
            "run `git init && git add -A && git commit -m 'initial'` there first"
        )
    if _git(project, "status", "--porcelain").stdout.strip():
        raise UpdateError(
            f"uncommitted changes in {project}: commit first (the update must be "
            "reviewable and reversible as its own diff)"
        )


def changed_files(project: Path) -> list[Change]:
    """What the update touched, as git sees it (paths relative to the project)."""
    out = _git(project, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", ".")
    prefix = _git(project, "rev-parse", "--show-prefix").stdout.strip()
    found = []
    entries = iter(out.stdout.split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            next(entries, None)  # -z puts a rename's source in the next field
        found.append(Change(status, path.removeprefix(prefix)))
    return found


def conflicts(project: Path, found: list[Change]) -> list[str]:
    """Files the merge could not settle: .rej files, or files with inline markers."""
    result = []
    for change in found:
        path = project / change.path
        if change.path.endswith(".rej"):
            result.append(change.path)
        elif path.is_file() and _has_markers(path):
            result.append(change.path)
    return result


def _has_markers(path: Path) -> bool:
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return False
    return any(line.startswith(MARKER) for line in text.splitlines())


def summary(project: Path, result: UpdateResult) -> str:
    """What a user needs to see after an update: versions, files, conflicts, next step."""
    if result.old_version == result.new_version:
        head = f"Re-rendered {project.name} at template {result.new_version}"
    else:
        head = f"Updated {project.name} from template {result.old_version} to {result.new_version}"
    lines = [head + "."]
    if not result.changes:
        lines.append("Nothing changed.")
        return "\n".join(lines)
    lines.append(f"Changed files ({len(result.changes)}, from git status):")
    lines += [f"  {_describe(change.status)}  {change.path}" for change in result.changes]
    if result.conflicts:
        lines.append(f"CONFLICTS in {len(result.conflicts)} file(s): {', '.join(result.conflicts)}")
        lines.append(
            "  Your version and the template's are both kept: resolve the `<<<<<<<` markers "
            "(or apply each .rej by hand and delete it), then commit."
        )
    else:
        lines.append("No conflicts. Review with `git diff`, run the tests, then commit.")
    return "\n".join(lines)


def _describe(status: str) -> str:
    if status == "??":
        return "added   "
    if "D" in status:
        return "deleted "
    return "modified"


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
