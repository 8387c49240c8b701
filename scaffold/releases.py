"""Template versions as git commits: one commit per version, holding only the template.

Both the wheel build (hatch_build.py) and a scaffold run from a checkout turn a version of
the template (copier.yml + templates/) into a commit of its own, tagged `v<version>`, in
a git repository that Copier can update projects from. The commits are reproducible —
no parent, a fixed author and date, the version in the message — so the same version
built on any machine, by any wheel, is the same commit: a user's template repository can
take versions from every wheel they install without a tag ever clashing.

Standard library (and `packaging`) only: the build hook imports this module in an
isolated build environment that has hatchling, not scaffold's dependencies.
"""

import os
import subprocess
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

TEMPLATE_PATHS = ("copier.yml", "templates")
_IMPORTED = "refs/scaffold-import/"
_REPRODUCIBLE = {
    "GIT_AUTHOR_NAME": "scaffold",
    "GIT_AUTHOR_EMAIL": "scaffold@localhost",
    "GIT_AUTHOR_DATE": "1980-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "scaffold",
    "GIT_COMMITTER_EMAIL": "scaffold@localhost",
    "GIT_COMMITTER_DATE": "1980-01-01T00:00:00+0000",
}


class ReleaseError(Exception):
    """A git step failed; the message carries git's own explanation."""


def git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        detail = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise ReleaseError(f"`git {' '.join(args[:2])}` failed in {repo}: {detail}")
    return result.stdout


def version_of(tag: str) -> Version | None:
    """The PEP 440 version a `v`-prefixed tag names, or None for any other tag."""
    if not tag.startswith("v"):
        return None
    try:
        return Version(tag[1:])
    except InvalidVersion:
        return None


def init_repository(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet")


def tag_trees(repo: Path) -> dict[str, str]:
    """Every version tag of `repo` and the tree (template content) of its commit."""
    out = git(repo, "for-each-ref", "--format=%(refname:short) %(tree)", "refs/tags")
    pairs = (line.split() for line in out.splitlines())
    return {tag: tree for tag, tree in pairs if version_of(tag) is not None}


def commit_version(repo: Path, tree: str, tag: str) -> None:
    """Commit `tree` as the template version `tag` (reproducibly) and tag it."""
    commit = git(
        repo, "commit-tree", "--no-gpg-sign", tree, "-m", f"scaffold template {tag}",
        env=_REPRODUCIBLE,
    ).strip()  # fmt: skip
    git(repo, "tag", tag, commit)


def import_release_tags(checkout: Path, repo: Path) -> None:
    """Add to `repo` every version tag of the scaffold `checkout` that `repo` lacks."""
    have = tag_trees(repo)
    wanted = [tag for tag in git(checkout, "tag", "--list", "v*").split() if version_of(tag)]
    missing = [tag for tag in wanted if tag not in have]
    if not missing:
        return
    git(repo, "fetch", "--quiet", "--no-tags", str(checkout),
        *(f"refs/tags/{tag}:{_IMPORTED}{tag}" for tag in missing))  # fmt: skip
    for tag in missing:
        listing = git(repo, "ls-tree", f"{_IMPORTED}{tag}^{{commit}}", "--", *TEMPLATE_PATHS)
        commit_version(repo, git(repo, "mktree", stdin=listing).strip(), tag)
        git(repo, "update-ref", "-d", f"{_IMPORTED}{tag}")


def working_tree(source: Path, repo: Path) -> str:
    """Write the template as it is on disk in `source` into `repo`; return its tree id.

    In a git checkout, that is what git sees there (tracked and untracked files, minus
    ignored ones and deleted ones); elsewhere (an unpacked sdist) every file.
    """
    if (source / ".git").exists():
        listed = git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                     "--", *TEMPLATE_PATHS)  # fmt: skip
        paths = [p for p in listed.split("\0") if p and (source / p).is_file()]
    else:
        files = [source / "copier.yml", *(source / "templates").rglob("*")]
        paths = [f.relative_to(source).as_posix() for f in files if f.is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway index: `repo`'s objects, `source`'s files.
        env = {
            "GIT_DIR": str(repo / ".git"),
            "GIT_WORK_TREE": str(source),
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
        }
        git(source, "add", "--force", "--pathspec-from-file=-", "--pathspec-file-nul",
            env=env, stdin="\0".join(paths))  # fmt: skip
        return git(source, "write-tree", env=env).strip()


def release_version(repo: Path, tree: str, version: str) -> str:
    """Tag `tree` as `v<version>` in `repo` and return the tag.

    If `v<version>` already holds a different template (a build from commits after the
    release, without a version bump), the released tag is left alone and this template
    gets a local version of its own, `v<version>+g<tree>`.
    """
    tag = f"v{version}"
    existing = tag_trees(repo).get(tag)
    if existing is not None and existing != tree:
        tag = f"v{version}+g{tree[:12]}"
        existing = tag_trees(repo).get(tag)
    if existing is None:
        commit_version(repo, tree, tag)
    return tag


def build_bundle(source: Path, version: str, bundle: Path) -> str:
    """Write a git bundle of every released template version plus this one; return its tag.

    `source` is a scaffold checkout (its version tags are included) or an unpacked
    source tree (only the version on disk is).
    """
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "template"
        init_repository(repo)
        if (source / ".git").exists():
            import_release_tags(source, repo)
        tag = release_version(repo, working_tree(source, repo), version)
        git(repo, "bundle", "create", "--quiet", str(bundle.absolute()), "--tags")
    return tag
