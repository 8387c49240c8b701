"""`scaffold update`: pull template fixes (and answer changes) into a generated project.

A thin wrapper over `copier update`, which re-renders the project's recorded template
version with its recorded answers, diffs that against the project, and merges the diff
into the new version (a three-way merge); what cannot merge is left as conflict markers
or `.rej` files. Around it this module adds what users otherwise trip over: clear
refusals (not a project, not a clean git tree), answer changes validated by copier.yml
like `scaffold new`'s flags, and a summary of what changed, read back from git.
"""

import contextlib
import io
import subprocess
import sys
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import copier
import yaml
from copier.errors import CopierError, CopierWarning
from copier.subproject import Subproject
from plumbum import ProcessExecutionError

from scaffold import __version__
from scaffold.answers import collect, inapplicable
from scaffold.render import ANSWERS_FILE
from scaffold.template_cache import (
    TemplateCacheError,
    has_version,
    own_template,
    repository_path,
)

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
    """Update `project` to the template's `vcs_ref`.

    By default, a project rendered from scaffold's own template goes to the version of
    the running scaffold; one from another `template` (or `_src_path`) to its latest tag.

    `given` holds answers to change (from flags; None means keep). Non-interactive runs
    keep every other recorded answer; interactive ones let Copier ask, recorded answers
    pre-filled (`skip_answered` asks only new questions).
    """
    project = project.absolute()
    recorded = read_answers(project)
    check_git_clean(project)
    relocated = False
    if template is None:
        template, default_ref = _own_template_for(recorded)
        relocated = template is not None
        vcs_ref = vcs_ref or default_ref
    changes = {name: value for name, value in given.items() if value is not None}
    if interactive:
        data = changes
    else:
        # Validate the new combination with copier.yml's rules before touching anything,
        # exactly as `scaffold new` would (e.g. --hardware cpu at medium scale is refused).
        kept = {k: v for k, v in recorded.items() if not k.startswith("_")}
        data = collect({**kept, **changes})
        unused = inapplicable(changes, data)
        if unused:
            raise UpdateError(unused)
    worker_class = _RelocatedWorker if relocated else copier.Worker
    # Copier prints some notes to stderr even when quiet; a failure is reported as one
    # paragraph instead, so hold them back until the update has succeeded.
    notes = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stderr(sys.stderr if interactive else notes),
        ):
            warnings.simplefilter("ignore", CopierWarning)
            with worker_class(
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
    except Exception as error:  # Copier raises many kinds; each becomes one clear paragraph
        raise UpdateError(f"copier update failed: {cause(error)}") from error
    sys.stderr.write(notes.getvalue())
    after = read_answers(project)
    found = changed_files(project)
    return UpdateResult(
        old_version=str(recorded.get("_commit")),
        new_version=str(after.get("_commit")),
        changes=found,
        conflicts=conflicts(project, found),
    )


def _own_template_for(recorded: dict[str, Any]) -> tuple[str | None, str | None]:
    """(template to use instead of the recorded one, version to update to by default).

    A project rendered by scaffold records the template repository in the cache of the
    machine it was rendered on. If that path does not exist here, this machine's cache
    is the same repository as long as it has the project's version: every scaffold wheel
    carries every released version. By default a project updates to the template of the
    scaffold that runs the update (`pip install -U scaffold-ml` first to get fixes).
    """
    src, commit = str(recorded["_src_path"]), str(recorded["_commit"])
    recorded_path = Path(src).expanduser()
    if not recorded_path.is_absolute():
        return None, None  # a URL: someone else's template, updated as Copier would
    is_own = recorded_path.exists() and recorded_path.resolve() == repository_path().resolve()
    if recorded_path.exists() and not is_own:
        return None, None  # a template repository of the owner's choosing
    try:
        own = own_template()
    except TemplateCacheError as error:
        raise UpdateError(str(error)) from error
    if not has_version(own.repository, commit):
        raise UpdateError(
            f"this project was rendered from scaffold's template {commit}, which this "
            f"scaffold ({__version__}, template {own.tag}) does not have: upgrade scaffold "
            "(pip install -U scaffold-ml); a snapshot of another machine's checkout can "
            "only be updated there"
        )
    return (None if is_own else own.src), own.tag


class _RelocatedWorker(copier.Worker):
    """Copier's update, reading the project's recorded version from `src_path`.

    Copier renders the recorded version from the recorded `_src_path`; a project
    rendered on another machine records that machine's template repository. This
    machine's has the same versions (same commits), so read it from there, and record it.
    """

    @cached_property
    def subproject(self) -> Subproject:
        result = copier.Worker.subproject.func(self)
        result.last_answers["_src_path"] = self.src_path
        return result


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


def cause(error: BaseException) -> str:
    """The reason a failed Copier run gives, as one line: for a failed git command its
    `fatal:`/`error:` lines (plumbum's own message is just "Unexpected exit code")."""
    if isinstance(error, ProcessExecutionError):
        lines = [line.strip() for line in str(error.stderr or "").splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines
        command = " ".join([Path(str(error.argv[0])).name, *map(str, error.argv[1:2])])
        return f"`{command}` failed: " + (" ".join(reasons) or f"exit status {error.retcode}")
    text = " ".join(str(error).split())
    if text.startswith("Unknown revision"):  # Copier's words for a missing tag or commit
        return f"{text}: the template repository has no such version"
    if isinstance(error, CopierError | ValueError | OSError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
