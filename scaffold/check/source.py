"""A parsed Python file, indexed in one walk of its syntax tree, for the checks to query."""

import ast
import re
from collections.abc import Callable
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
    # The function, lambda or class (or the module) whose body each node runs in.
    owners: dict[ast.AST, ast.AST] = field(default_factory=dict)
    calls_by_owner: dict[ast.AST, list[ast.Call]] = field(default_factory=dict)
    memo: dict[tuple, object] = field(default_factory=dict)  # per-file results of queries

    def finding(self, node: ast.AST, check: str, message: str, fix: str) -> Finding:
        from scaffold.check.registry import CHECKS

        line, column = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
        return Finding(self.path, line, column, CHECKS[check].rule, check, message, fix)

    def suppressed(self, finding: Finding) -> bool:
        return is_suppressed(self.text, finding)


def is_suppressed(text: str, finding: Finding) -> bool:
    """True when the finding's line carries `# scaffold: ignore[<its rule>]`."""
    lines = text.splitlines()
    if not 0 < finding.line <= len(lines):
        return False
    match = IGNORE_COMMENT.search(lines[finding.line - 1])
    return bool(match) and finding.rule in {r.strip() for r in match.group(1).split(",")}


def parse(path: Path, shown: str, project: Project) -> Source:
    """Read and index `path`; raises SyntaxError, UnicodeDecodeError or OSError."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=shown)
    source = Source(shown, text, tree, project)
    parents, owners, index = source.parents, source.owners, indexers(source)
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:  # one walk: parents, owners and the index
        node, owner = stack.pop()
        inner = node if isinstance(node, Function | ast.Lambda | ast.ClassDef) else owner
        for name in node._fields:  # ast.iter_child_nodes, inlined: this loop is the hot path
            value = getattr(node, name, None)
            children = value if isinstance(value, list) else (value,)
            for child in children:
                if isinstance(child, ast.AST):
                    parents[child] = node
                    owners[child] = inner
                    stack.append((child, inner))
        add = index.get(type(node))
        if add is not None:
            add(node, owner)
    # The walk is depth-first from the end; the checks reason about source order.
    source.calls.sort(key=position)
    for calls in source.calls_by_owner.values():
        calls.sort(key=position)
    source.loops.sort(key=position)
    source.assigns.sort(key=position)
    return source


def indexers(source: Source) -> dict[type, Callable[[ast.AST, ast.AST], None]]:
    """Node type -> how the walk files it in the index."""

    def call(node: ast.AST, owner: ast.AST) -> None:
        source.calls.append(node)
        source.calls_by_owner.setdefault(owner, []).append(node)

    def function(node: ast.AST, owner: ast.AST) -> None:
        source.functions.setdefault(node.name, []).append(node)

    def string(node: ast.AST, owner: ast.AST) -> None:
        if isinstance(node.value, str):
            source.strings.add(node.value)

    def into(items: list) -> Callable[[ast.AST, ast.AST], None]:
        return lambda node, owner: items.append(node)

    return {
        ast.Call: call,
        ast.FunctionDef: function,
        ast.AsyncFunctionDef: function,
        ast.For: into(source.loops),
        ast.AsyncFor: into(source.loops),
        ast.While: into(source.loops),
        ast.Assign: into(source.assigns),
        ast.AnnAssign: into(source.assigns),
        ast.AugAssign: into(source.assigns),
        ast.Import: into(source.imports),
        ast.ImportFrom: into(source.imports),
        ast.Attribute: into(source.attributes),
        ast.Constant: string,
    }


def position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def end_position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0
