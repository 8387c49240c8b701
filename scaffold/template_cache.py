"""The template repository in the user's cache: every template version scaffold shipped here.

Projects record `_src_path` (this repository) and `_commit` (a version tag in it), and
`copier update` reads old and new versions from it, offline. Each scaffold adds its own
version when it runs: a wheel from the bundle it carries (every released version, see
hatch_build.py), a checkout from its `v*` tags and its working tree. Old versions stay,
so projects rendered by any earlier scaffold — here or, via the bundle, on another
machine — can still be updated.

A checkout whose template is not a released version (uncommitted changes, or commits
since the last tag) is kept as a snapshot, `v<version>+snapshot.<n>`: a real commit,
so projects rendered from it update like any other, but one only this machine has.
"""

from pathlib import Path
from typing import NamedTuple

import platformdirs
from filelock import FileLock

from scaffold import __version__
from scaffold.releases import (
    ReleaseError,
    commit_version,
    git,
    import_release_tags,
    init_repository,
    tag_trees,
    version_of,
    working_tree,
)
from scaffold.template import checkout_root, packaged_releases

SNAPSHOT = "snapshot."


class TemplateCacheError(Exception):
    """The template repository could not be prepared; the message says why."""


class OwnTemplate(NamedTuple):
    repository: Path
    src: str  # what a project records as `_src_path`
    tag: str  # the version of the template this scaffold renders
    snapshot: bool  # an unreleased checkout state, which only this machine has


def repository_path() -> Path:
    """$XDG_CACHE_HOME/scaffold/template on Linux (platformdirs' cache dir elsewhere)."""
    return platformdirs.user_cache_path("scaffold", appauthor=False) / "template"


def own_template() -> OwnTemplate:
    """Make sure the cache repository holds this scaffold's template version; describe it."""
    repository = repository_path()
    try:
        repository.parent.mkdir(parents=True, exist_ok=True)
        # Several scaffold processes (xdist workers, two terminals) may add versions at once.
        with FileLock(repository.parent / "template.lock"):
            if not (repository / ".git").is_dir():
                init_repository(repository)
            tag, snapshot = _add_own_version(repository)
    except (ReleaseError, OSError) as error:
        raise TemplateCacheError(
            f"cannot prepare scaffold's template repository {repository}: {error}"
        ) from error
    return OwnTemplate(repository, display(repository), tag, snapshot)


def display(path: Path) -> str:
    """`path` as projects record it: `~/...` under the home directory (Copier expands it),
    so the record holds for the same user layout on another machine."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def has_version(repository: Path, tag: str) -> bool:
    return tag in tag_trees(repository)


def _add_own_version(repository: Path) -> tuple[str, bool]:
    packaged = packaged_releases()
    if packaged is not None:
        bundle, tag = packaged
        if not has_version(repository, tag):
            # Without `+`: a version already here is never moved (its commit is the same).
            git(repository, "fetch", "--quiet", "--no-tags", str(bundle), "refs/tags/*:refs/tags/*")
        return tag, False
    checkout = checkout_root()
    if checkout is None:
        raise TemplateCacheError(
            "this scaffold has neither a bundle of template versions nor a git checkout; "
            "reinstall it from a wheel (pip install --force-reinstall scaffold-ml)"
        )
    return _add_checkout_version(repository, checkout)


def _add_checkout_version(repository: Path, checkout: Path) -> tuple[str, bool]:
    import_release_tags(checkout, repository)
    tree = working_tree(checkout, repository)
    tags = tag_trees(repository)
    same = [tag for tag, tag_tree in tags.items() if tag_tree == tree]
    released = [tag for tag in same if "+" not in tag]
    if released or same:
        return max(released or same, key=version_of), not released
    snapshots = [version_of(tag).local for tag in tags if SNAPSHOT in tag]
    number = 1 + max((int(local.removeprefix(SNAPSHOT)) for local in snapshots), default=0)
    tag = f"v{__version__}+{SNAPSHOT}{number}"
    commit_version(repository, tree, tag)
    return tag, True
