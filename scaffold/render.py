"""Render a project from the Copier template, all or nothing."""

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import copier
import jinja2
import yaml
from copier.errors import CopierError, CopierWarning

from scaffold.source import template_source

ANSWERS_FILE = ".copier-answers.yml"


class TargetExistsError(Exception):
    """The target directory exists and is not empty; nothing was touched."""


class RenderError(Exception):
    """The project could not be written or the template failed; one paragraph says why."""


def refuse_non_empty(target: Path) -> None:
    """Raise TargetExistsError unless `target` is absent or an empty directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetExistsError(f"{target} already exists and is not empty; choose another NAME.")


def refuse_unwritable(target: Path) -> None:
    """Raise RenderError unless `target`'s directory could be created (checked up front,
    so the wizard does not ask everything first)."""
    ancestor = target.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RenderError(f"cannot create {target}: {ancestor} is not a directory.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RenderError(
            f"cannot create {target}: {ancestor} is not writable by you; choose another place."
        )


def render_project(answers: dict[str, Any], target: Path) -> list[Path]:
    """Render `answers` into `target` (absent or empty) and return the files written.

    Copier writes into a hidden staging directory beside the target, which is moved
    into place only when rendering finished: an error or Ctrl+C leaves nothing behind.
    """
    target = target.absolute()
    refuse_non_empty(target)
    try:
        # Copier makes projects with the user's umask (0755 typically); mkdtemp's 0700
        # would make the project private.
        mode = target.stat().st_mode & 0o7777 if target.exists() else _default_dir_mode()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as error:
        raise RenderError(f"cannot create {target}: {error.strerror}.") from error
    source = template_source()
    if source.warning:
        print(f"scaffold: warning: {source.warning}", file=sys.stderr)
    try:
        with warnings.catch_warnings():
            # Copier warns about untagged or dirty template checkouts; users can't act on it.
            warnings.simplefilter("ignore", CopierWarning)
            copier.run_copy(
                source.src,
                staging,
                data=answers,
                defaults=True,
                quiet=True,
                unsafe=False,
                vcs_ref=source.vcs_ref,
            )
        staging.chmod(mode)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except (OSError, CopierError, jinja2.TemplateError, yaml.YAMLError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise RenderError(_failure(target, error)) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())


def _default_dir_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _failure(target: Path, error: BaseException) -> str:
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"cannot write {target}: {error.strerror or error}{where}. Nothing was written."
    where = ""
    if isinstance(error, jinja2.TemplateSyntaxError) and error.name:
        where = f" in {error.name}, line {error.lineno}"
    return (
        f"the template failed to render{where}: {type(error).__name__}: {error}. "
        "Nothing was written. This is a bug in the template, not in your answers; rerun "
        "with --debug for the traceback and report it."
    )
