"""`scaffold check`: the rule catalog (RULES.md) made executable on any training code.

Each check reads Python syntax trees (never imports or runs the code) and reports a
rule ID, file:line, what is wrong and the fix. `enforced()` maps every rule ID to the
checks that enforce it, for the docs' rule catalog.
"""

from scaffold.check.engine import Report, run_checks
from scaffold.check.findings import Finding
from scaffold.check.registry import all_checks, enforced

# The rule IDs `scaffold check` enforces; docs/rules.md (scaffold.rules_page) reads it.
CHECKED_RULES = frozenset(enforced())

__all__ = ["CHECKED_RULES", "Finding", "Report", "all_checks", "enforced", "run_checks"]
