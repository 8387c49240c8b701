"""`scaffold check` finds each catalogued error, at its line, and nothing in correct code.

tests/check_cases/<check>/ holds, for every check, wrong files written from the seeds'
❌ examples and variants of them (other names, other nesting) and their corrected twins
(Python files, and YAML configs for the checks that read training configs).
A wrong line carries `# expect: R-ID`; a file with no such comment must produce nothing.
"""

import re
from pathlib import Path

import pytest
import yaml

from scaffold import __version__
from scaffold.check import all_checks, enforced, run_checks
from scaffold.samples import SAMPLES, sample_combinations

CASES = Path(__file__).parent / "check_cases"
EXPECT = re.compile(r"# expect: (R-[A-Z0-9-]+)")
REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "check.md"


def case_files() -> list[Path]:
    return sorted([*CASES.rglob("*.py"), *CASES.rglob("*.yaml")])


def expected(path: Path) -> set[tuple[int, str]]:
    lines = path.read_text().splitlines()
    return {(n, m.group(1)) for n, line in enumerate(lines, 1) for m in EXPECT.finditer(line)}


def check_of(path: Path) -> str:
    return path.relative_to(CASES).parts[0]


@pytest.mark.parametrize("path", case_files(), ids=lambda p: str(p.relative_to(CASES)))
def test_case_reports_exactly_its_expected_findings(path: Path):
    report = run_checks([path])
    assert not report.errors
    assert {(f.line, f.rule) for f in report.findings} == expected(path)
    assert {f.check for f in report.findings} <= {check_of(path)}


def test_every_check_has_a_wrong_case_and_a_corrected_twin():
    for c in all_checks():
        files = [p for p in case_files() if check_of(p) == c.name]
        wrong = [p for p in files if expected(p)]
        right = [p for p in files if not expected(p)]
        assert wrong and right, f"{c.name} needs tests/check_cases/{c.name}/ bad and good files"
        assert all(check_of(p) == c.name for p in wrong)


def test_docs_list_every_check_under_its_rule():
    rows = set(re.findall(r"^\| `(R-[A-Z0-9-]+)` \| `([a-z-]+)` \|", DOCS.read_text(), re.M))
    assert rows == {(rule, name) for rule, names in enforced().items() for name in names}


def test_generated_samples_have_no_findings():
    report = run_checks(sorted(SAMPLES.iterdir()))
    assert report.files > 0
    assert not report.errors
    assert report.findings == []


@pytest.mark.parametrize("task,hardware", sample_combinations())
def test_rendered_project_has_no_findings(render, task: str, hardware: str):
    report = run_checks([render(task=task, hardware=hardware)])
    assert not report.errors
    assert [f"{f.path}:{f.line} {f.rule} {f.message}" for f in report.findings] == []


def test_generated_projects_run_the_check_of_the_release_that_rendered_them(render):
    project = render(task="pretraining", hardware="cpu")
    repos = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"]
    hooks = [h for r in repos if r["repo"] == "local" for h in r["hooks"]]
    [hook] = [h for h in hooks if h["id"] == "scaffold-check"]
    assert hook["entry"] == "scaffold check"
    assert hook["additional_dependencies"] == [f"scaffold-ml=={__version__}"]
    assert hook["pass_filenames"] is False

    steps = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    runs = [s.get("run", "") for s in steps["jobs"]["smoke"]["steps"]]
    assert f"pip install scaffold-ml=={__version__} && scaffold check ." in runs
