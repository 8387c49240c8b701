"""The questions of copier.yml, read and evaluated the way Copier does.

copier.yml is the one source of truth for questions, choices, defaults and valid
combinations; the CLI flags, the wizard and the docs are all derived from it here.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment

from scaffold.template import template_root


@dataclass(frozen=True)
class Question:
    name: str
    type: str
    help: str
    choices: dict[str, Any]  # label -> value, in the order copier.yml gives them
    default: Any  # a literal, a Jinja string, or None when there is no default
    when: Any
    validator: str | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def values(self) -> list[Any]:
        return list(self.choices.values())


@cache
def questions() -> tuple[Question, ...]:
    """All questions of copier.yml, in order (settings starting with `_` skipped)."""
    spec = yaml.safe_load((template_root() / "copier.yml").read_text())
    return tuple(
        Question(
            name=name,
            type=body.get("type", "str"),
            help=body.get("help", name),
            choices=_choices(body.get("choices")),
            default=body.get("default"),
            when=body.get("when", True),
            validator=body.get("validator"),
        )
        for name, body in spec.items()
        if not name.startswith("_")
    )


def question(name: str) -> Question:
    return next(q for q in questions() if q.name == name)


def _choices(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    return {str(value): value for value in raw}


@cache
def jinja_env() -> SandboxedEnvironment:
    """Jinja as Copier sets it up: the template root as the loader's root (for includes),
    with jinja2-ansible-filters (regex_search, basename, from_yaml, ...)."""
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(template_root())),
        extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"],
    )


def render(value: Any, answers: dict[str, Any]) -> Any:
    """Render a Jinja string against the answers so far; other values pass through."""
    if not isinstance(value, str) or "{" not in value:
        return value
    return jinja_env().from_string(value).render(**answers).strip()


def is_asked(q: Question, answers: dict[str, Any]) -> bool:
    """Copier's `when`: false when the question does not apply (e.g. gpus on cpu)."""
    when = render(q.when, answers)
    if isinstance(when, str):
        return yaml.safe_load(when) not in (False, None, "", 0)
    return bool(when)


def default(q: Question, answers: dict[str, Any]) -> Any:
    value = render(q.default, answers)
    return cast(q, value) if value is not None else None


def cast(q: Question, value: Any) -> Any:
    if q.type == "int":
        return int(value)
    if q.type == "yaml":
        return yaml.safe_load(value) if isinstance(value, str) else value
    return value if q.type != "str" else str(value)


def problem(q: Question, answers: dict[str, Any]) -> str | None:
    """The validator's message for the answer already in `answers`, or None if valid."""
    if q.validator is None:
        return None
    message = " ".join(str(render(q.validator, answers)).split())
    return message or None
