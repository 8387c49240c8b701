"""The interactive wizard: one questionary prompt per question copier.yml asks."""

from typing import Any

import questionary

from scaffold import memory_plan
from scaffold import questions as qs


def ask(q: qs.Question, default: Any, answers: dict[str, Any]) -> Any:
    """Prompt for one answer. Ctrl+C raises KeyboardInterrupt (nothing is written yet)."""
    if q.choices:
        choices = [_choice(q, label, value, answers) for label, value in q.choices.items()]
        enabled = [c.value for c in choices if not c.disabled]
        return questionary.select(
            q.help,
            choices=choices,
            default=default if default in enabled else None,
        ).unsafe_ask()
    if q.type == "int":
        return questionary.text(
            q.help, default=str(default or ""), validate=_int_validator
        ).unsafe_ask()
    return questionary.text(q.help, default=str(default or "")).unsafe_ask()


def _choice(q: qs.Question, label: str, value: Any, answers: dict[str, Any]) -> questionary.Choice:
    # Impossible combinations are shown, greyed out, with the reason (R-SCALE-FITS-HW).
    reason = qs.problem(q, {**answers, q.name: value})
    return questionary.Choice(title=label, value=value, disabled=reason)


def _int_validator(text: str) -> bool | str:
    return text.isdigit() and int(text) > 0 or "a whole number, at least 1"


def confirm(answers: dict[str, Any], target: str) -> bool:
    print(summary(answers, target))
    return questionary.confirm("Render this project?", default=True).unsafe_ask()


def summary(answers: dict[str, Any], target: str) -> str:
    shown = {name: value for name, value in answers.items() if name != "model_config"}
    width = max(map(len, shown))
    rows = "\n".join(f"  {name:<{width}}  {value}" for name, value in shown.items())
    text = f"\nscaffold will create {target}/ with:\n{rows}\n"
    if memory_plan.applies(answers):
        plan = memory_plan.plan(answers)
        text += (
            f"\nMemory plan for {answers['gpu_memory']} GiB GPUs "
            f"(peak {memory_plan.gib(plan.peak)} GiB per GPU):\n{memory_plan.table(plan)}\n"
        )
    return text
