"""The docs site builds (strict: no broken links) with a gallery page per sample."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from scaffold.gallery import diff_steps, fenced, load_samples, pages, sample_page_path, title
from scaffold.rules_page import RULE_ID
from scaffold.samples import SAMPLES

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIRS = sorted(p.parent for p in SAMPLES.glob("*/.copier-answers.yml"))


def html_for(site: Path, page: str) -> Path:
    # mkdocs' directory URLs: gallery/pretraining/cpu.md -> gallery/pretraining/cpu/index.html
    page = page.removesuffix(".md")
    directory = page.removesuffix("index") if page.endswith("index") else page + "/"
    return site / directory / "index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # material's end-of-life banner
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_the_site_has_the_hand_written_pages(site):
    for page in ("index.md", "updating.md", "releasing.md", "rules.md", "gallery/index.md"):
        assert html_for(site, page).is_file(), page
    assert "Never move or delete a released tag" in html_for(site, "releasing.md").read_text()


def test_there_are_samples_to_show():
    assert SAMPLE_DIRS, "generated_samples/ is empty: python -m scaffold.samples"


@pytest.mark.parametrize("sample", SAMPLE_DIRS, ids=[p.name for p in SAMPLE_DIRS])
def test_every_sample_has_a_page_with_its_tree_and_key_files(site, sample):
    answers = yaml.safe_load((sample / ".copier-answers.yml").read_text())
    page = html_for(site, sample_page_path(answers))
    assert page.is_file(), f"no gallery page for {sample.name}"
    html = page.read_text()
    assert "README.md" in html and "configs" in html
    entry = "infer.py" if (sample / "infer.py").is_file() else "train.py"
    assert entry in html
    task_page = html_for(site, f"gallery/{answers['task']}/index.md")
    assert task_page.is_file()
    index = html_for(site, "gallery/index.md").read_text()
    assert f'href="{answers["task"]}/{answers["hardware"]}/"' in index


def test_task_pages_diff_each_hardware_target_against_the_one_it_grows_from():
    assert diff_steps(["cpu", "mps", "cuda", "multi-gpu"]) == [
        ("cpu", "mps"),
        ("cpu", "cuda"),
        ("cuda", "multi-gpu"),
    ]
    assert diff_steps(["cpu", "multi-gpu"]) == [("cpu", "multi-gpu")]
    by_task = {(s["task"], s["hardware"]) for s in load_samples(SAMPLES)}
    written = pages(SAMPLES)
    for task, hardware in by_task:
        if hardware == "multi-gpu" and (task, "cuda") in by_task:
            text = written[f"gallery/{task}/index.md"]
            assert "## cuda → multi-gpu" in text
            # launch/ exists only for multi-gpu: it shows up as added files in the diff.
            if (SAMPLES / f"{task}-multi-gpu" / "launch").is_dir():
                assert "`launch/torchrun.sh` (added)" in text


def test_code_with_its_own_fences_is_fenced_longer():
    text = "# README\n\n```bash\npytest -q\n```\n"
    block = fenced(text, "markdown")
    assert block.startswith("````markdown\n") and block.endswith("\n````")


def test_the_rules_page_has_a_section_for_every_rule_the_samples_cite(site):
    html = html_for(site, "rules.md").read_text()
    cited = set()
    for sample in SAMPLE_DIRS:
        for path in sample.rglob("*.py"):
            cited |= set(RULE_ID.findall(path.read_text()))
    assert cited
    for rule_id in cited:
        assert f'id="{rule_id.lower()}"' in html, rule_id


def nav_titles(site: Path) -> list[str]:
    html = (site / "index.html").read_text()
    return re.findall(r'<span class="md-ellipsis">\s*([^<]+?)\s*</span>', html)


def test_the_nav_puts_users_pages_before_the_maintainers_and_includes_the_rules(site):
    titles = nav_titles(site)
    assert "Rules" in titles
    assert titles.index("Updating a project") < titles.index("Releasing (maintainers)")
    assert titles[-1] == "Releasing (maintainers)"


def test_gallery_sections_are_titled_from_copier_yml_not_directory_names(site):
    titles = nav_titles(site)
    for task in {s["task"] for s in load_samples(SAMPLES)}:
        assert title("task", task) in titles
        guess = task.capitalize()  # mkdocs' title from the directory: "Sft", "Dpo", "Rlhf"
        assert guess == title("task", task) or guess not in titles
    assert "Supervised fine-tuning" in titles and "Several NVIDIA GPUs" in titles


def test_gallery_diffs_leave_out_the_answers_file():
    for path, text in pages(SAMPLES).items():
        if path.endswith("/index.md") and path != "gallery/index.md":
            assert ".copier-answers.yml" not in text, path


def test_the_docs_extra_builds_the_site_without_the_training_stack():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {re.split(r"[=<>\[ ]", requirement)[0] for requirement in extras["docs"]}
    assert {"mkdocs", "mkdocs-material"} <= names
    assert not names & {"torch", "transformers", "trl"}
    assert 'pip install -e ".[docs]"' in (REPO / "README.md").read_text()


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
URL = re.compile(r"https?://[^\s)>\"'`]+")
# Checked by hand to exist; a new external link in a README needs the same before it goes here.
KNOWN_URLS = {"https://docs.vllm.ai"}


def readmes() -> list[Path]:
    """scaffold's README and every sample project's README and RULES.md (the docs pages
    themselves are the strict build's to check)."""
    found = [REPO / "README.md"]
    for sample in SAMPLE_DIRS:
        found += [sample / "README.md", sample / "RULES.md"]
    return found


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_readme_links_to_a_place_that_does_not_exist(readme):
    text = readme.read_text()
    for url in URL.findall(text):
        assert url in KNOWN_URLS, f"{readme.name} links {url}: check it exists, then list it"
    for target in MARKDOWN_LINK.findall(text):
        path = target.split("#", 1)[0]
        if URL.match(target) or not path:  # checked above, or a heading on the same page
            continue
        assert (readme.parent / path).exists(), f"{readme.name} links {target}"
