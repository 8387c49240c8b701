"""The rule catalog reaches users: each project's RULES.md and the docs' rules page."""

from pathlib import Path

import pytest

from scaffold.rules_page import DEFAULT_OUT, RULE_ID, page, rules
from scaffold.samples import SAMPLES

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIRS = sorted(p.parent for p in SAMPLES.glob("*/.copier-answers.yml"))


def cited_ids(project: Path) -> set[str]:
    """Rule IDs cited anywhere in a project's code and configs (not in RULES.md itself)."""
    found: set[str] = set()
    for path in project.rglob("*"):
        if path.is_file() and path.name != "RULES.md" and path.suffix in {".py", ".yaml", ".md"}:
            found |= set(RULE_ID.findall(path.read_text()))
    return found


def test_the_catalog_has_every_rule_once_with_all_its_fields():
    ids = [rule["id"] for rule in rules()]
    assert len(ids) == len(set(ids))
    for rule in rules():
        assert rule["title"] and rule["what"] and rule["why"] and rule["how"], rule["id"]


def test_the_catalog_covers_every_rule_of_the_specification():
    spec = REPO.parent / "shared" / "RULES.md"
    assert set(RULE_ID.findall(spec.read_text())) <= {rule["id"] for rule in rules()}


@pytest.mark.parametrize("sample", SAMPLE_DIRS, ids=[p.name for p in SAMPLE_DIRS])
def test_every_rule_a_project_cites_is_explained_in_its_rules_file(sample):
    explained = set(RULE_ID.findall((sample / "RULES.md").read_text()))
    missing = cited_ids(sample) - explained
    assert not missing, f"{sample.name}/RULES.md lacks {sorted(missing)}"


def test_every_rule_id_in_the_samples_has_a_section_on_the_docs_page():
    sections = {
        line.removeprefix("## ").strip()
        for line in (REPO / DEFAULT_OUT).read_text().splitlines()
        if line.startswith("## ")
    }
    cited = set().union(*(cited_ids(sample) for sample in SAMPLE_DIRS))
    assert cited and cited <= sections, sorted(cited - sections)


def test_every_rule_is_enforced_by_a_test():
    assert "no test cites it yet" not in page(REPO / "tests")


def test_the_committed_rules_page_is_current():
    assert (REPO / DEFAULT_OUT).read_text() == page(
        REPO / "tests"
    ), "docs/rules.md is stale; regenerate with: python -m scaffold.rules_page"
