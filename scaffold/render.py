"""Render a project from the Copier template, all or nothing."""

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import copier
import yaml
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
        if source.record is not None:
            # Still in staging: the project appears with its update source, or not at all.
            record_source(staging / ANSWERS_FILE, *source.record)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())


def record_source(answers_file: Path, src_path: str, commit: str) -> None:
    """Point a project's answers file at the template `copier update` should use."""
    header, _, _ = answers_file.read_text().partition("\n")
    answers = yaml.safe_load(answers_file.read_text()) or {}
    answers |= {"_src_path": src_path, "_commit": commit}
    # Sorted, as Copier writes it, so a later `copier update` rewrites it without noise.
    answers_file.write_text(f"{header}\n{yaml.safe_dump(answers, sort_keys=True)}")
