"""`scaffold check [PATH ...]`: the command line of the checker."""

import argparse
import difflib
import sys
from pathlib import Path

from scaffold.check import output
from scaffold.check.engine import run_checks
from scaffold.check.files import PathError
from scaffold.check.registry import Check, all_checks

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check",
        help="find known training-code errors in Python files and training configs",
        description="Read Python files and YAML training configs (a generated project or "
        "any training code) and report each catalogued training-code error: rule ID, "
        "file:line, what is wrong and the fix. Nothing is imported or run. Exit status: "
        "0 clean, 1 problems found, 2 bad usage or unreadable files. "
        "`# scaffold: ignore[R-ID]` silences one line.",
    )
    parser.add_argument(
        "paths", metavar="PATH", nargs="*", default=["."], help="files or directories (default: .)"
    )
    parser.add_argument(
        "--format", choices=["text", "json", "sarif"], default="text", help="output format"
    )
    parser.add_argument(
        "--select",
        metavar="IDS",
        help="only these rule IDs or check names, comma-separated (e.g. R-STEP-ORDER,R-AMP)",
    )
    parser.add_argument(
        "--ignore", metavar="IDS", help="skip these rule IDs or check names, comma-separated"
    )
    parser.add_argument(
        "--list", action="store_true", help="list every check and the rule it enforces"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        checks = chosen(all_checks(), args.select, args.ignore)
    except UsageError as error:
        print(f"scaffold check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        for c in checks:
            print(f"{c.rule:<20} {c.name:<36} {c.summary}")
        return EXIT_CLEAN
    try:
        report = run_checks([Path(p) for p in args.paths], checks)
    except PathError as error:
        print(f"scaffold check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(output.as_json(report))
    elif args.format == "sarif":
        print(output.sarif(report, checks))
    else:
        print(output.text(report))
    if report.errors:
        return EXIT_USAGE
    return EXIT_FOUND if report.findings else EXIT_CLEAN


def chosen(checks: list[Check], select: str | None, ignore: str | None) -> list[Check]:
    """The checks left after --select and --ignore (rule IDs or check names)."""
    known = {c.rule for c in checks} | {c.name for c in checks}
    wanted, unwanted = ids(select, known), ids(ignore, known)
    return [
        c
        for c in checks
        if (not wanted or {c.rule, c.name} & wanted) and not {c.rule, c.name} & unwanted
    ]


def ids(option: str | None, known: set[str]) -> set[str]:
    given = {part.strip() for part in (option or "").split(",") if part.strip()}
    for name in sorted(given - known):
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        close = close or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (see `scaffold check --list`)"
        raise UsageError(f"unknown rule ID {name!r}{hint}")
    return given
