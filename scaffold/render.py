"""Render a project from the Copier template, all or nothing."""

import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import copier
from copier.errors import CopierWarning

from scaffold.source import template_source

ANSWERS_FILE = ".copier-answers.yml"


class TargetExistsError(Exception):
    """The target directory exists and is not empty; nothing was touched."""


def refuse_non_empty(target: Path) -> None:
    """Raise TargetExistsError unless `target` is absent or an empty directory."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetExistsError(f"{target} already exists and is not empty; choose another NAME.")


def render_project(answers: dict[str, Any], target: Path) -> list[Path]:
    """Render `answers` into `target` (absent or empty) and return the files written.

    Copier writes into a hidden staging directory beside the target, which is moved
    into place only when rendering finished: an error or Ctrl+C leaves nothing behind.
    """
    target = target.absolute()
    refuse_non_empty(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
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
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
