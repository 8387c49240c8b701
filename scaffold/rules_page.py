"""The docs' rule catalog page, built from the template's own catalog.

    python -m scaffold.rules_page [OUT]   # write docs/rules.md (the default OUT)

The rules live once, in `templates/macros/rules.jinja`, which also renders each project's
RULES.md. This page adds what only scaffold's repository knows: which of scaffold's tests
enforce each rule (every test that cites the rule's ID), and which rules `scaffold check`
finds in any code. tests/test_rules_page.py keeps the committed page equal to this output.
"""

import ast
import re
import sys
from pathlib import Path
from typing import Any

import jinja2

from scaffold.template import template_root

CATALOG = "templates/macros/rules.jinja"
RULE_ID = re.compile(r"\bR-[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*\b")
DEFAULT_OUT = Path("docs/rules.md")


def rules() -> list[dict[str, Any]]:
    """The catalog, as the template defines it."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_root()))
    return list(env.get_template(CATALOG).module.rules)


def enforcing_tests(tests_dir: Path, ids: list[str]) -> dict[str, list[str]]:
    """Rule ID -> the tests that cite it: `tests/file.py::test_name` for a test function
    whose name or body cites the ID (`test_r_seed_...`, `# R-SEED`), `tests/file.py` for a
    module whose docstring does."""
    by_name = {"test_" + rule_id.lower().replace("-", "_"): rule_id for rule_id in ids}
    found: dict[str, list[str]] = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        source = path.read_text()
        lines = source.splitlines()
        module = ast.parse(source)
        for rule_id in sorted(set(RULE_ID.findall(ast.get_docstring(module) or ""))):
            found.setdefault(rule_id, []).append(f"tests/{path.name}")
        for node in ast.walk(module):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                cited = set(RULE_ID.findall(body))
                cited |= {rid for name, rid in by_name.items() if node.name.startswith(name + "_")}
                for rule_id in sorted(cited):
                    found.setdefault(rule_id, []).append(f"tests/{path.name}::{node.name}")
    return found


def checked_by_scaffold_check() -> set[str]:
    """Rule IDs that `scaffold check` reports, when that command is part of this version."""
    try:
        from scaffold.check import CHECKED_RULES  # type: ignore[attr-defined]
    except ImportError:
        return set()
    return set(CHECKED_RULES)


def page(tests_dir: Path) -> str:
    catalog = rules()
    tests = enforcing_tests(tests_dir, [rule["id"] for rule in catalog])
    checked = checked_by_scaffold_check()
    out = [
        "# The rule catalog",
        "",
        "Every project scaffold renders follows these rules. Each is a mistake that training",
        "code commonly makes; the templates are written to avoid it, the generated code cites",
        "the rule's ID in a comment where it applies (`# R-SEED`), and scaffold's test suite",
        "has at least one test that fails when a rendered project breaks it. Each project",
        "carries its own `RULES.md` with the rules that apply to it.",
        "",
        "This page is generated from `templates/macros/rules.jinja` by",
        "`python -m scaffold.rules_page`; do not edit it by hand.",
        "",
    ]
    for rule in catalog:
        applies = "every task" if rule["tasks"] == "all" else ", ".join(rule["tasks"])
        if "hardware" in rule:
            applies += f" (on {', '.join(rule['hardware'])})"
        enforced = tests.get(rule["id"], [])
        out += [
            f"## {rule['id']}",
            "",
            f"**{rule['title']}.** {rule['what']}",
            "",
            f"- **Why:** {rule['why']}",
            f"- **How the generated code does it:** {rule['how']}",
            f"- **Applies to:** {applies}.",
            "- **Enforced by:** "
            + (", ".join(f"`{t}`" for t in enforced) if enforced else "no test cites it yet."),
            "- **`scaffold check`:** "
            + ("finds it in any code." if rule["id"] in checked else "not checked."),
            "",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_OUT
    out.write_text(page(template_root() / "tests"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
