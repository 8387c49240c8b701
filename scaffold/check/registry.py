"""The checks `scaffold check` runs, each tied to the RULES.md rule it enforces.

A check is a function from a parsed file (and what is known about its project) to
findings. `ENFORCED` maps each rule ID to the checks that enforce it; the docs' rule
catalog reads it to say which rules `scaffold check` covers.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaffold.check.findings import Finding


@dataclass(frozen=True)
class Check:
    name: str
    rule: str
    summary: str  # one line: the wrong pattern it finds
    run: "Callable[[Any], Iterator[Finding]]"  # a Source, or a Config for kind "config"
    kind: str = "python"  # what it reads: "python" files or YAML "config" files


CHECKS: dict[str, Check] = {}


def check(name: str, rule: str, summary: str, kind: str = "python"):
    """Register a check: `@check("missing-zero-grad", "R-STEP-ORDER", "...")`."""

    def register(run: "Callable[[Any], Iterator[Finding]]"):
        CHECKS[name] = Check(name, rule, summary, run, kind)
        return run

    return register


def all_checks() -> list[Check]:
    """Every check, once its module has registered it."""
    from scaffold.check import (  # noqa: F401  (importing a module registers its checks)
        configs,
        devices,
        distributed,
        evaluation,
        huggingface,
        loss,
        monitoring,
        persistence,
        training_loop,
    )

    return list(CHECKS.values())


def enforced() -> dict[str, list[str]]:
    """Rule ID -> the names of the checks that enforce it."""
    rules: dict[str, list[str]] = {}
    for c in all_checks():
        rules.setdefault(c.rule, []).append(c.name)
    return dict(sorted(rules.items()))
