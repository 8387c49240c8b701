"""`copier update` / `scaffold update` end to end, offline.

The template (copier.yml + templates/ of this checkout) goes into a local git repository
tagged v1; a project is rendered from it by `scaffold new`, committed, and edited the way
a user would; then the template gets a fix tagged v2 and the project is updated.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cli import tree_digest

import scaffold
from scaffold.source import ENV_SOURCE
from scaffold.template import template_root

REPO = Path(__file__).resolve().parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    # Never read the machine's git config (signing, hooks, default branch names).
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
FIX = '"""[fixed in v2] '  # the template fix: the first line of config.py changes
USER_LR = "  lr: 3.0e-4  # user: lower peak LR"
USER_FUNCTION = "\n\ndef user_helper() -> int:\n    return 42\n"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def scaffold_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "scaffold", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_template_repo(path: Path, tag: str = "v1") -> Path:
    path.mkdir(parents=True)
    shutil.copy(template_root() / "copier.yml", path / "copier.yml")
    shutil.copytree(template_root() / "templates", path / "templates")
    git(path, "init", "-q")
    commit_all(path, "template")
    git(path, "tag", tag)
    return path


def commit_all(path: Path, message: str) -> None:
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-verify", "-m", message)


def fix_template(template: Path, tag: str = "v2") -> None:
    """A template bug fix on one line of config.py, released as `tag`."""
    fix_config_docstring(template)
    commit_all(template, f"fix config.py docstring ({tag})")
    git(template, "tag", tag)


def fix_config_docstring(template: Path, fix: str = FIX) -> None:
    """Change the first line of the template's config.py (uncommitted)."""
    source = template / "templates" / "config.py.jinja"
    lines = source.read_text().splitlines(keepends=True)
    assert lines[0].startswith('"""') and "{" not in lines[0], lines[0]
    lines[0] = lines[0].replace('"""', fix, 1)
    source.write_text("".join(lines))


def new_project(tmp: Path, template: Path, hardware: str = "cpu") -> Path:
    """`scaffold new` from the local template repo, then `git init` + commit."""
    result = scaffold_cli(
        "new", "proj", "--task", "pretraining", "--hardware", hardware, "--scale", "small",
        "--yes", cwd=tmp, env={ENV_SOURCE: str(template)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    project = tmp / "proj"
    git(project, "init", "-q")
    commit_all(project, "rendered by scaffold")
    return project


def edit_like_a_user(project: Path) -> None:
    train_yaml = project / "configs" / "train.yaml"
    text, count = re.subn(r"(?m)^  lr: .*$", USER_LR, train_yaml.read_text())
    assert count == 1
    train_yaml.write_text(text)
    with (project / "train.py").open("a") as file:
        file.write(USER_FUNCTION)
    commit_all(project, "my changes")


def answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


@pytest.fixture
def edited_project(tmp_path: Path) -> tuple[Path, Path]:
    """(template repo at v1, pretraining cpu project rendered from it and edited)."""
    template = make_template_repo(tmp_path / "template")
    project = new_project(tmp_path, template)
    edit_like_a_user(project)
    return template, project


def assert_fix_arrived_and_edits_survived(project: Path, before: dict) -> None:
    assert (project / "config.py").read_text().startswith(FIX)
    assert USER_LR in (project / "configs" / "train.yaml").read_text()
    assert (project / "train.py").read_text().endswith(USER_FUNCTION)
    after = answers(project)
    assert after["_commit"] == "v2"
    assert {k: v for k, v in after.items() if k != "_commit"} == {
        k: v for k, v in before.items() if k != "_commit"
    }
    assert not list(project.rglob("*.rej"))


def test_new_records_an_absolute_source_and_the_rendered_tag(edited_project):
    template, project = edited_project
    recorded = answers(project)
    assert recorded["_src_path"] == str(template.resolve())
    assert recorded["_commit"] == "v1"


def test_plain_copier_update_pulls_the_fix_and_keeps_the_edits(edited_project):
    template, project = edited_project
    before = answers(project)
    fix_template(template)
    copier_cli = Path(sys.executable).with_name("copier")
    result = subprocess.run(
        [str(copier_cli), "update", "--defaults", "--quiet"],
        cwd=project,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert_fix_arrived_and_edits_survived(project, before)


@pytest.mark.smoke
def test_scaffold_update_pulls_the_fix_keeps_the_edits_and_the_project_still_trains(
    edited_project,
):
    template, project = edited_project
    before = answers(project)
    fix_template(template)
    result = scaffold_cli("update", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "from template v1 to v2" in result.stdout
    assert "config.py" in result.stdout and "No conflicts" in result.stdout
    assert_fix_arrived_and_edits_survived(project, before)
    # The user's edits are in their own commit; the update is exactly the fix + the version.
    changed = git(project, "status", "--porcelain").split()
    assert set(changed) == {"M", "config.py", ".copier-answers.yml"}

    smoke = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]


@pytest.mark.parametrize("mode", ["inline", "rej"])
def test_a_conflicting_edit_is_kept_visible_and_reported(tmp_path, mode):
    template = make_template_repo(tmp_path / "template")
    project = new_project(tmp_path, template)
    config = project / "config.py"
    lines = config.read_text().splitlines(keepends=True)
    user_line = lines[0].replace('"""', '"""[user wording] ', 1)
    config.write_text("".join([user_line, *lines[1:]]))
    commit_all(project, "reword the config docstring")
    fix_template(template)

    result = scaffold_cli("update", "--yes", "--conflict", mode, cwd=project)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "CONFLICTS" in result.stdout and "config.py" in result.stdout
    text = config.read_text()
    if mode == "inline":
        # Both sides, between markers, in the file itself.
        assert "<<<<<<< " in text and ">>>>>>> " in text
        assert user_line in text and text.count(FIX) == 1
    else:
        # The template's version in the file; the user's change that did not apply beside it.
        assert text.startswith(FIX)
        rejected = (project / "config.py.rej").read_text()
        assert "+" + user_line in rejected
        assert "config.py.rej" in result.stdout


def test_changing_an_answer_renders_as_if_new_plus_the_users_edits(edited_project, tmp_path):
    template, project = edited_project
    result = scaffold_cli("update", "--yes", "--hardware", "multi-gpu", "--gpus", "2", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "launch/torchrun.sh" in result.stdout
    assert answers(project)["hardware"] == "multi-gpu"
    assert answers(project)["gpus"] == 2

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = scaffold_cli(
        "new", "proj", "--task", "pretraining", "--hardware", "multi-gpu", "--gpus", "2",
        "--scale", "small", "--yes", cwd=fresh_dir, env={ENV_SOURCE: str(template)},
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    fresh = fresh_dir / "proj"
    # The fresh render plus the user's two edits is, byte for byte, the updated project.
    edit_like_a_user_without_git(fresh)
    updated = {k: v for k, v in tree_digest(project).items() if not k.startswith(".git/")}
    assert updated == tree_digest(fresh)
    assert (project / "launch" / "torchrun.sh").is_file()


def edit_like_a_user_without_git(project: Path) -> None:
    train_yaml = project / "configs" / "train.yaml"
    train_yaml.write_text(re.sub(r"(?m)^  lr: .*$", USER_LR, train_yaml.read_text()))
    with (project / "train.py").open("a") as file:
        file.write(USER_FUNCTION)


def test_an_impossible_answer_change_is_refused_before_touching_anything(edited_project):
    _, project = edited_project
    before = tree_digest(project)
    result = scaffold_cli("update", "--yes", "--scale", "medium", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit on a CPU" in result.stderr
    assert tree_digest(project) == before


def test_a_flag_that_does_not_apply_to_the_project_is_refused(edited_project):
    # The project is for a CPU: copier would drop --gpus silently.
    _, project = edited_project
    before = tree_digest(project)
    result = scaffold_cli("update", "--yes", "--gpus", "4", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--gpus does not apply" in result.stderr and "--hardware cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert tree_digest(project) == before


def test_update_refuses_what_it_cannot_update(edited_project, tmp_path):
    _, project = edited_project
    plain = tmp_path / "plain"
    plain.mkdir()
    result = scaffold_cli("update", str(plain), "--yes", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a scaffold project (no .copier-answers.yml)" in result.stderr

    (project / "train.py").write_text("# half-finished edit\n")
    result = scaffold_cli("update", "--yes", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "uncommitted changes" in result.stderr and "commit first" in result.stderr

    shutil.rmtree(project / ".git")
    result = scaffold_cli("update", "--yes", cwd=project)
    assert result.returncode == 2 and "not in a git repository" in result.stderr


def test_a_failing_update_says_why_in_one_paragraph(edited_project, tmp_path):
    template, project = edited_project
    gone = tmp_path / "moved-away.git"
    result = scaffold_cli("update", "--yes", "--template", gone.as_uri(), cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Unexpected exit code" not in result.stderr
    assert "does not appear to be a git repository" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    git(template, "tag", "-d", "v1")  # the project's recorded version no longer exists
    result = scaffold_cli("update", "--yes", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "v1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_version_this_scaffold_does_not_have_is_refused_with_the_fix(edited_project, tmp_path):
    _, project = edited_project
    recorded = (project / ".copier-answers.yml").read_text()
    # Rendered on another machine by a newer scaffold: neither its path nor version is here.
    other = recorded.replace("_commit: v1", "_commit: v99.0.0").replace(
        f"_src_path: {answers(project)['_src_path']}", f"_src_path: {tmp_path / 'elsewhere'}"
    )
    (project / ".copier-answers.yml").write_text(other)
    commit_all(project, "from another machine")
    result = scaffold_cli("update", "--yes", cwd=project, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "v99.0.0" in result.stderr and "pip install -U scaffold-ml" in result.stderr


def test_the_package_version_and_pyproject_version_agree():
    # The wheel's template version (and release tag) is v<version of pyproject.toml>,
    # which must be what scaffold says it is.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{scaffold.__version__}"' in pyproject
