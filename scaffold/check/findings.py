"""What a check reports: one broken rule at one place in one file."""

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str  # a RULES.md ID, e.g. R-STEP-ORDER
    check: str  # the check that found it, e.g. missing-zero-grad
    message: str  # what is wrong
    fix: str  # how to fix it


@dataclass(frozen=True, order=True)
class ParseError:
    """A file that could not be read or parsed: reported, never a crash."""

    path: str
    line: int
    message: str
