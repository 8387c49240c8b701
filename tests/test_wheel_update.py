"""`scaffold update` for users: installed from wheels, offline, across two releases.

A copy of this checkout is released twice, as its maintainer would (docs/releasing.md):
the wheel of this version, then — after tagging it — the wheel of the next version with a
template fix and a changed pin. Each test installs wheels into a fresh virtualenv (which
sees this environment's packages, so nothing is downloaded), renders and edits a project
like a user, upgrades, and updates. No network, no URL anywhere.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import pytest
from test_cli import tree_digest
from test_update import (
    FIX,
    GIT_ENV,
    USER_FUNCTION,
    USER_LR,
    answers,
    commit_all,
    edit_like_a_user,
    fix_config_docstring,
    git,
)

import scaffold

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("scaffold", "templates", "copier.yml", "pyproject.toml", "README.md", "hatch_build.py")
NEXT = "0.99.0"
PINNED, OLD_PIN, NEXT_PIN = "numpy", "2.4.6", "2.4.7"  # the next release moves a pin
USER_PACKAGE = "scipy==1.16.2"  # the project's owner adds a package to requirements.txt


class Release(NamedTuple):
    checkout: Path  # the released copy of this checkout, tagged v<this> and v<NEXT>
    this: Path  # wheel of scaffold.__version__
    next: Path  # wheel of NEXT: the config.py fix and NEXT_PIN


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    root = tmp_path_factory.mktemp("release")
    checkout = copy_of_this_checkout(root / "scaffold")
    this = build_wheel(checkout, root / "dist")
    git(checkout, "tag", f"v{scaffold.__version__}")  # the release step after the build

    fix_config_docstring(checkout)
    requirements = checkout / "templates" / "requirements.txt.jinja"
    old, new = f"'{PINNED}': '{OLD_PIN}'", f"'{PINNED}': '{NEXT_PIN}'"
    assert old in requirements.read_text()
    requirements.write_text(requirements.read_text().replace(old, new))
    bump_version(checkout, NEXT)
    commit_all(checkout, f"Release v{NEXT}")
    git(checkout, "tag", f"v{NEXT}")
    return Release(checkout, this, build_wheel(checkout, root / "dist"))


def copy_of_this_checkout(target: Path) -> Path:
    """What git sees in this checkout (uncommitted work included), committed, untagged."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *SOURCES],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for path in filter(None, listed.split("\0")):
        if (REPO / path).is_file():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, target / path)
    git(target, "init", "-q")
    commit_all(target, f"scaffold {scaffold.__version__}")
    return target


def bump_version(checkout: Path, version: str) -> None:
    for path, pattern in (
        (checkout / "pyproject.toml", r'(?m)^version = "[^"]+"'),
        (checkout / "scaffold" / "__init__.py", r'(?m)^__version__ = "[^"]+"'),
    ):
        text, count = re.subn(pattern, lambda m: re.sub(r'"[^"]+"', f'"{version}"', m[0]),
                              path.read_text())  # fmt: skip
        assert count == 1, path
        path.write_text(text)


def build_wheel(checkout: Path, dist: Path) -> Path:
    """`pip wheel` offline: hatchling (and its build hook) from this environment."""
    before = set(dist.glob("*.whl")) if dist.exists() else set()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--wheel-dir", str(dist), str(checkout)])  # fmt: skip
    (wheel,) = set(dist.glob("*.whl")) - before
    return wheel


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


class User(NamedTuple):
    """A virtualenv with scaffold installed from a wheel, on a machine with its own cache."""

    venv: Path
    env: dict[str, str]

    def install(self, wheel: Path) -> None:
        python = str(self.venv / "bin" / "python")
        run([sys.executable, "-m", "pip", "--python", python, "install", "--upgrade",
             "--no-deps", "--no-index", "--no-cache-dir", str(wheel)])  # fmt: skip

    def scaffold(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.venv / "bin" / "scaffold"), *args], cwd=cwd, env=self.env,
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def on_machine(self, cache: Path) -> "User":
        return self._replace(env={**self.env, "XDG_CACHE_HOME": str(cache)})


def new_user(tmp_path: Path, wheel: Path) -> User:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    # This environment's packages (copier, ...) without its scaffold: .pth lines add a
    # directory to sys.path but do not run the .pth files (editable installs) inside it.
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    (purelib / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCAFFOLD_", "PYTHON"))}
    user = User(venv, {**env, **GIT_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    user.install(wheel)
    return user


def new_edited_project(user: User, where: Path) -> Path:
    where.mkdir()
    result = user.scaffold("new", "proj", "--task", "pretraining", "--hardware", "cpu", "--yes",
                           cwd=where)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr  # a release: no warning
    project = where / "proj"
    git(project, "init", "-q")
    commit_all(project, "rendered by scaffold")
    edit_like_a_user(project)
    requirements = project / "requirements.txt"
    text = requirements.read_text()
    # Between two pinned lines, in alphabetical order, as an owner would add it.
    requirements.write_text(text.replace("tokenizers==", f"{USER_PACKAGE}\ntokenizers==", 1))
    commit_all(project, "add scipy")
    return project


def template_repository(user: User) -> Path:
    return Path(user.env["XDG_CACHE_HOME"]) / "scaffold" / "template"


def files(project: Path) -> dict[str, str]:
    """The project's files and their digests, without git's own (.git/ changes on reads)."""
    return {k: v for k, v in tree_digest(project).items() if not k.startswith(".git/")}


def assert_updated_to_next(user: User, project: Path) -> None:
    result = user.scaffold("update", "--yes", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from template v{scaffold.__version__} to v{NEXT}" in result.stdout
    assert "No conflicts" in result.stdout
    assert (project / "config.py").read_text().startswith(FIX)
    assert USER_LR in (project / "configs" / "train.yaml").read_text()
    assert (project / "train.py").read_text().endswith(USER_FUNCTION)
    requirements = (project / "requirements.txt").read_text()
    assert f"{PINNED}=={NEXT_PIN}\n" in requirements and OLD_PIN not in requirements
    assert USER_PACKAGE in requirements and "<<<<<<<" not in requirements
    recorded = answers(project)
    assert recorded["_commit"] == f"v{NEXT}"
    assert recorded["_src_path"] == str(template_repository(user))
    commit_all(project, f"update to v{NEXT}")

    before = files(project)
    again = user.scaffold("update", "--yes", cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing changed" in again.stdout
    assert files(project) == before


def test_a_wheel_records_its_version_in_the_template_repository_in_the_users_cache(
    release, tmp_path
):
    user = new_user(tmp_path, release.this)
    project = new_edited_project(user, tmp_path / "work")
    recorded = answers(project)
    assert recorded["_src_path"] == str(template_repository(user))
    assert recorded["_commit"] == f"v{scaffold.__version__}"
    # The recorded version is a commit of that repository, holding the wheel's template.
    git(template_repository(user), "cat-file", "-e", f"v{scaffold.__version__}^{{commit}}")
    packaged = git(template_repository(user), "show", f"v{scaffold.__version__}:copier.yml")
    assert packaged == (release.checkout / "copier.yml").read_text()

    # Plain `copier update` works from that record too, once the upgraded scaffold ran.
    user.install(release.next)
    assert user.scaffold("new", "other", "--task", "sft", "--yes", cwd=tmp_path).returncode == 0
    copier_update = [str(user.venv / "bin" / "python"), "-m", "copier", "update", "--defaults"]
    run(copier_update, cwd=project, env=user.env)
    assert (project / "config.py").read_text().startswith(FIX)
    assert answers(project)["_commit"] == f"v{NEXT}"


def test_upgrading_scaffold_brings_the_template_fix_and_keeps_the_owners_edits(release, tmp_path):
    user = new_user(tmp_path, release.this)
    project = new_edited_project(user, tmp_path / "work")
    user.install(release.next)
    assert_updated_to_next(user, project)


def test_a_project_from_another_machine_updates_from_this_machines_wheel(release, tmp_path):
    user = new_user(tmp_path, release.this)
    project = new_edited_project(user.on_machine(tmp_path / "their-cache"), tmp_path / "work")
    shutil.rmtree(tmp_path / "their-cache")  # their template repository is not here
    # This machine never installed the old wheel: the old version comes from the new one.
    here = user.on_machine(tmp_path / "my-cache")
    here.install(release.next)
    assert_updated_to_next(here, project)


def test_a_checkout_with_uncommitted_template_changes_records_a_commit_that_exists(
    release, tmp_path
):
    checkout = tmp_path / "checkout"
    shutil.copytree(release.checkout, checkout, symlinks=True)
    fix_config_docstring(checkout, '"""[uncommitted] ')
    cache = tmp_path / "cache"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCAFFOLD_")},
        **GIT_ENV,
        "PYTHONPATH": str(checkout),
        "XDG_CACHE_HOME": str(cache),
    }

    def scaffold_from_checkout(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scaffold", *args], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    result = scaffold_from_checkout("new", "proj", "--task", "pretraining", "--yes",
                                    "--hardware", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "not a released version" in result.stderr and "only this machine" in result.stderr
    project = tmp_path / "proj"
    assert (project / "config.py").read_text().startswith('"""[uncommitted] ')
    commit = answers(project)["_commit"]
    assert commit == f"v{NEXT}+snapshot.1"
    repository = cache / "scaffold" / "template"
    git(repository, "cat-file", "-e", f"{commit}^{{commit}}")
    # The released versions of the checkout are there too.
    assert {f"v{scaffold.__version__}", f"v{NEXT}"} <= set(git(repository, "tag").split())
    git(project, "init", "-q")
    commit_all(project, "rendered by scaffold")

    for _ in range(2):
        before = files(project)
        result = scaffold_from_checkout("update", "--yes", cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Nothing changed" in result.stdout
        assert files(project) == before

    # A further template change is a new snapshot, and the update brings it.
    fix_config_docstring(checkout, '"""[again] ')
    result = scaffold_from_checkout("update", "--yes", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"to v{NEXT}+snapshot.2" in result.stdout
    assert (project / "config.py").read_text().startswith('"""[again] [uncommitted] ')
