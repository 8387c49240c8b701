"""Reading rendered projects, for the rule tests: configs as YAML, Python as ASTs."""

import ast
from pathlib import Path

import yaml


def config(project: Path, name: str = "train") -> dict:
    return yaml.safe_load((project / "configs" / f"{name}.yaml").read_text())


def tree(project: Path, file: str = "train.py") -> ast.Module:
    return ast.parse((project / file).read_text())


def callee(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def calls(node: ast.AST, name: str) -> list[ast.Call]:
    """Calls whose callee is `name` or ends in `.name`, in source order."""
    found = [c for c in ast.walk(node) if isinstance(c, ast.Call) and callee(c) == name]
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def function(module: ast.Module, name: str) -> ast.FunctionDef:
    found = [n for n in ast.walk(module) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"no function {name}()"
    return found[0]
