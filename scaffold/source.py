"""Which template a project is rendered from, and so what its answers file records.

`copier update` later needs `_src_path` (where the template lives) and `_commit` (the
version that rendered the project) in `.copier-answers.yml`, and both must exist
wherever the project's owner runs the update — offline too. So scaffold renders from
the template repository in the user's cache (scaffold/template_cache.py) at this
scaffold's own version tag, and Copier records exactly that:

- installed from a wheel: `_commit: v<scaffold version>`, a version the wheel's bundle
  carries along with every earlier one;
- run from a git checkout: its release tag when the template on disk is a released
  version, else a snapshot `v<version>+snapshot.<n>` (with a warning: only this
  machine has it);
- `SCAFFOLD_TEMPLATE` (a git URL or local git repository) overrides both: render that
  template at `SCAFFOLD_TEMPLATE_REF` (default: its latest version tag), as Copier would.
"""

import os
from pathlib import Path
from typing import NamedTuple

from scaffold.template_cache import own_template

ENV_SOURCE = "SCAFFOLD_TEMPLATE"
ENV_REF = "SCAFFOLD_TEMPLATE_REF"


class TemplateSource(NamedTuple):
    src: str  # what Copier renders from and records as `_src_path`
    vcs_ref: str | None  # git ref to render; None: the latest PEP 440 tag
    warning: str | None  # what the user should know about this source, if anything


def template_source() -> TemplateSource:
    override = os.environ.get(ENV_SOURCE, "").strip()
    if override:
        return TemplateSource(_absolute(override), os.environ.get(ENV_REF) or None, None)
    own = own_template()
    warning = None
    if own.snapshot:
        warning = (
            "the template in this scaffold checkout is not a released version (uncommitted "
            f"changes or commits since the last tag); it was rendered and recorded as "
            f"{own.tag} in {own.src}, which only this machine has"
        )
    return TemplateSource(own.src, own.tag, warning)


def _absolute(src: str) -> str:
    # Copier stores `_src_path` as given; a relative path breaks updates run elsewhere.
    path = Path(src).expanduser()
    return str(path.resolve()) if path.exists() else src
