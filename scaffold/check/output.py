"""A report as text for people, JSON for scripts, or SARIF 2.1.0 for code-scanning UIs."""

import json
from pathlib import Path

from scaffold import __version__
from scaffold.check.engine import Report
from scaffold.check.registry import Check

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def text(report: Report) -> str:
    lines = []
    for error in report.errors:
        lines.append(f"{error.path}:{error.line}: cannot check: {error.message}")
    for f in report.findings:
        lines.append(f"{f.path}:{f.line}:{f.column}: {f.rule} [{f.check}] {f.message}")
        lines.append(f"    fix: {f.fix}")
    files = f"{report.files} file{'s' * (report.files != 1)}"
    if report.findings:
        count = len(report.findings)
        lines.append(f"{count} problem{'s' * (count != 1)} in {files}.")
    elif not report.errors:
        lines.append(f"No problems in {files}.")
    return "\n".join(lines)


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "findings": [
                {
                    "rule": f.rule,
                    "check": f.check,
                    "path": f.path,
                    "line": f.line,
                    "column": f.column,
                    "message": f.message,
                    "fix": f.fix,
                }
                for f in report.findings
            ],
            "errors": [
                {"path": e.path, "line": e.line, "message": e.message} for e in report.errors
            ],
            "files": report.files,
        },
        indent=2,
    )


def sarif(report: Report, checks: list[Check]) -> str:
    rules = sorted({c.rule for c in checks} | {f.rule for f in report.findings})
    descriptors = [
        {
            "id": rule,
            "name": rule.removeprefix("R-").title().replace("-", ""),
            "shortDescription": {
                "text": "; ".join(c.summary for c in checks if c.rule == rule) or rule
            },
            "properties": {"checks": [c.name for c in checks if c.rule == rule]},
        }
        for rule in rules
    ]
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": rules.index(f.rule),
            "level": "error",
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [location(f.path, f.line, f.column)],
            "properties": {"check": f.check},
        }
        for f in report.findings
    ]
    notifications = [
        {
            "level": "error",
            "message": {"text": e.message},
            "locations": [location(e.path, e.line, 1)],
        }
        for e in report.errors
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "scaffold check",
                        "version": __version__,
                        "rules": descriptors,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2)


def location(path: str, line: int, column: int) -> dict:
    p = Path(path)
    artifact = (
        {"uri": p.as_uri()} if p.is_absolute() else {"uri": p.as_posix(), "uriBaseId": "%SRCROOT%"}
    )
    return {
        "physicalLocation": {
            "artifactLocation": artifact,
            "region": {"startLine": line, "startColumn": column},
        }
    }
