"""Run the checks over files: parse each once, gather what its project knows, report."""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from scaffold.check.configs import Config, parse_config
from scaffold.check.files import checked_files, hardware_of, is_python
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
    """Check every Python and YAML file under `paths` (raises files.PathError for a missing
    path)."""
    checks = all_checks() if checks is None else checks
    report = Report()
    projects: dict[tuple[Path, str | None], Project] = {}
    answers_cache: dict[Path, str | None] = {}
    parsed: list[Source | Config] = []
    for path, root in checked_files(paths):
        hardware = hardware_of(path, answers_cache)
        project = projects.setdefault((root, hardware), Project(hardware=hardware))
        try:
            if is_python(path):
                source = parse(path, shown(path), project)
                project.calls.update(dotted(c.func) for c in source.calls)
                parsed.append(source)
            else:
                parsed.append(parse_config(path, shown(path), project))
        except SyntaxError as error:
            report.errors.append(
                ParseError(shown(path), error.lineno or 1, f"syntax error: {error.msg}")
            )
        except yaml.YAMLError as error:
            if path != root:
                continue  # found by walking a directory: maybe not a config at all (a Helm chart)
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            report.errors.append(ParseError(shown(path), line, f"invalid YAML: {error}"))
        except (UnicodeDecodeError, OSError) as error:
            report.errors.append(ParseError(shown(path), 1, f"cannot read: {error}"))
    report.files = len(parsed) + len(report.errors)
    for file in parsed:  # after every file of a project is known
        kind = "config" if isinstance(file, Config) else "python"
        for c in checks:
            if c.kind == kind:
                report.findings.extend(f for f in c.run(file) if not file.suppressed(f))
    report.findings = sorted(set(report.findings))
    report.errors.sort()
    return report
