"""A parsed Python file, indexed in one walk of its syntax tree, for the checks to query."""

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.check.findings import Finding

# `# scaffold: ignore[R-STEP-ORDER]` or `# scaffold: ignore[R-STEP-ORDER, R-AMP]`
IGNORE_COMMENT = re.compile(r"#\s*scaffold:\s*ignore\[([^\]]*)\]")

Loop = ast.For | ast.AsyncFor | ast.While
Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Project:
    """What is known about the project a file belongs to, across all its checked files."""

    hardware: str | None = None  # from .copier-answers.yml, when the project has one
    calls: set[str] = field(default_factory=set)  # dotted names of every call in the project


@dataclass
class Source:
    path: str  # as shown in findings
    text: str
    tree: ast.Module
    project: Project
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    calls: list[ast.Call] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    functions: dict[str, list[Function]] = field(default_factory=dict)
    assigns: list[ast.Assign | ast.AnnAssign | ast.AugAssign] = field(default_factory=list)
    imports: list[ast.Import | ast.ImportFrom] = field(default_factory=list)
    attributes: list[ast.Attribute] = field(default_factory=list)
    strings: set[str] = field(default_factory=set)

    def finding(self, node: ast.AST, check: str, message: str, fix: str) -> Finding:
        from scaffold.check.registry import CHECKS

        line, column = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
        return Finding(self.path, line, column, CHECKS[check].rule, check, message, fix)

    def suppressed(self, finding: Finding) -> bool:
        """True when the finding's line carries `# scaffold: ignore[<its rule>]`."""
        lines = self.text.splitlines()
        if not 0 < finding.line <= len(lines):
            return False
        match = IGNORE_COMMENT.search(lines[finding.line - 1])
        return bool(match) and finding.rule in {r.strip() for r in match.group(1).split(",")}


def parse(path: Path, shown: str, project: Project) -> Source:
    """Read and index `path`; raises SyntaxError, UnicodeDecodeError or OSError."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=shown)
    source = Source(shown, text, tree, project)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            source.parents[child] = node
        if isinstance(node, ast.Call):
            source.calls.append(node)
        elif isinstance(node, Loop):
            source.loops.append(node)
        elif isinstance(node, Function):
            source.functions.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            source.assigns.append(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            source.imports.append(node)
        elif isinstance(node, ast.Attribute):
            source.attributes.append(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            source.strings.add(node.value)
    # ast.walk is breadth-first; the checks reason about source order.
    source.calls.sort(key=position)
    source.loops.sort(key=position)
    source.assigns.sort(key=position)
    return source


def position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)
