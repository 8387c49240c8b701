"""Which template a project is rendered from, and what its answers file records for updates.

`copier update` later needs `_src_path` (where the template lives) and `_commit` (the
version that rendered the project) in `.copier-answers.yml`. What to record depends on
how scaffold was installed:

- a git checkout (editable install, developer): render the working tree (HEAD plus any
  uncommitted changes) and let Copier record the checkout's absolute path and
  `git describe` of HEAD;
- a wheel or sdist install: render the template packaged inside scaffold (offline) and
  record the canonical git URL with the tag `v<scaffold version>`, which the release
  process (docs/releasing.md) guarantees holds exactly that template;
- `SCAFFOLD_TEMPLATE` (a git URL or local git repository) overrides both: render that
  template at `SCAFFOLD_TEMPLATE_REF` (default: its latest version tag), as Copier would.
"""

import os
from pathlib import Path
from typing import NamedTuple

from scaffold import __version__
from scaffold.template import template_root

CANONICAL_URL = "https://github.com/scaffold-ml/scaffold.git"
ENV_SOURCE = "SCAFFOLD_TEMPLATE"
ENV_REF = "SCAFFOLD_TEMPLATE_REF"


class TemplateSource(NamedTuple):
    src: str  # what Copier renders from: a directory or a git URL
    vcs_ref: str | None  # git ref to render; None: the latest PEP 440 tag
    record: tuple[str, str] | None  # (_src_path, _commit) to write instead of Copier's own


def release_tag(version: str = __version__) -> str:
    """The git tag that holds the template shipped with scaffold `version`."""
    return f"v{version}"


def template_source() -> TemplateSource:
    override = os.environ.get(ENV_SOURCE, "").strip()
    if override:
        return TemplateSource(_absolute(override), os.environ.get(ENV_REF) or None, None)
    root = template_root()
    if (root / ".git").exists():
        # Without a ref Copier would render the latest *tag*, silently ignoring template
        # changes made since; a checkout renders what is on disk.
        return TemplateSource(str(root), "HEAD", None)
    # A packaged copy is not a git repository: Copier would record a site-packages path
    # and no version, and `copier update` could never run on the project.
    return TemplateSource(str(root), None, (CANONICAL_URL, release_tag()))


def _absolute(src: str) -> str:
    # Copier stores `_src_path` as given; a relative path breaks updates run elsewhere.
    path = Path(src).expanduser()
    return str(path.resolve()) if path.exists() else src
