"""Render a project from the Copier template, all or nothing."""

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import copier
from copier.errors import CopierWarning

from scaffold.template import template_root


class TargetExistsError(Exception):
    """The target directory exists and is not empty; nothing was touched."""


def render_project(answers: dict[str, Any], target: Path) -> list[Path]:
    """Render `answers` into `target` (absent or empty) and return the files written.

    Copier writes into a hidden staging directory beside the target, which is moved
    into place only when rendering finished: an error or Ctrl+C leaves nothing behind.
    """
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetExistsError(f"{target} already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with warnings.catch_warnings():
            # Copier warns about untagged or dirty template checkouts; users can't act on it.
            warnings.simplefilter("ignore", CopierWarning)
            copier.run_copy(
                str(template_root()),
                staging,
                data=answers,
                defaults=True,
                quiet=True,
                unsafe=False,
            )
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
