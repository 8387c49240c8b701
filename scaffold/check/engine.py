"""Run the checks over files: parse each once, gather what its project knows, report."""

from dataclasses import dataclass, field
from pathlib import Path

from scaffold.check.files import hardware_of, python_files
from scaffold.check.findings import Finding, ParseError
from scaffold.check.patterns import dotted
from scaffold.check.registry import Check, all_checks
from scaffold.check.source import Project, Source, parse


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)
    files: int = 0


def shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_checks(paths: list[Path], checks: list[Check] | None = None) -> Report:
    """Check every Python file under `paths` (raises files.PathError for a missing path)."""
    checks = all_checks() if checks is None else checks
    report = Report()
    projects: dict[tuple[Path, str | None], Project] = {}
    answers_cache: dict[Path, str | None] = {}
    sources: list[Source] = []
    for path, root in python_files(paths):
        hardware = hardware_of(path, answers_cache)
        project = projects.setdefault((root, hardware), Project(hardware=hardware))
        try:
            source = parse(path, shown(path), project)
        except SyntaxError as error:
            report.errors.append(
                ParseError(shown(path), error.lineno or 1, f"syntax error: {error.msg}")
            )
            continue
        except (UnicodeDecodeError, OSError) as error:
            report.errors.append(ParseError(shown(path), 1, f"cannot read: {error}"))
            continue
        project.calls.update(dotted(c.func) for c in source.calls)
        sources.append(source)
    report.files = len(sources) + len(report.errors)
    for source in sources:  # after every file of a project is known
        for c in checks:
            report.findings.extend(f for f in c.run(source) if not source.suppressed(f))
    report.findings = sorted(set(report.findings))
    report.errors.sort()
    return report
