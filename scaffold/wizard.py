"""The interactive wizard: one questionary prompt per question copier.yml asks."""

import shutil
import textwrap
from functools import cache
from typing import Any

import questionary

from scaffold import memory_plan
from scaffold import questions as qs
from scaffold.detect import detect_hardware as _detect

# Asked once: nvidia-smi can take seconds.
detect_hardware = cache(_detect)
# questionary's pointer and "- " in front of a greyed-out choice.
CHOICE_INDENT = 6


def ask(q: qs.Question, default: Any, answers: dict[str, Any]) -> Any:
    """Prompt for one answer. Ctrl+C raises KeyboardInterrupt (nothing is written yet)."""
    message = prompt(q, answers)
    if q.choices:
        choices = [_choice(q, label, value, answers) for label, value in q.choices.items()]
        enabled = [c.value for c in choices if not c.disabled]
        return questionary.select(
            message,
            choices=choices,
            default=default if default in enabled else None,
        ).unsafe_ask()
    if q.type == "int":
        return questionary.text(
            message, default=str(default or ""), validate=_int_validator
        ).unsafe_ask()
    return questionary.text(message, default=str(default or "")).unsafe_ask()


def prompt(q: qs.Question, answers: dict[str, Any]) -> str:
    """The question as copier.yml words it for these answers, with what was detected."""
    text = str(qs.render(q.help, answers))
    if q.name == "hardware":
        return f"{text} (detected: {detected()})"
    if q.name == "gpus" and detect_hardware()[1] >= 2:
        return f"{text} (detected: {detect_hardware()[1]} on this machine)"
    return text


def detected() -> str:
    hardware, gpus = detect_hardware()
    if gpus:
        return f"{gpus} NVIDIA GPU{'s' if gpus > 1 else ''}"
    return "Apple Silicon" if hardware == "mps" else "no NVIDIA GPU"


def _choice(q: qs.Question, label: str, value: Any, answers: dict[str, Any]) -> questionary.Choice:
    # Impossible combinations are shown, greyed out, with the reason (R-SCALE-FITS-HW),
    # wrapped under the choice so that it is readable in an 80-column terminal.
    reason = qs.problem(q, {**answers, q.name: value})
    if not reason:
        return questionary.Choice(title=label, value=value)
    width = max(shutil.get_terminal_size().columns - CHOICE_INDENT - 1, 30)
    label_lines = textwrap.wrap(label, width)
    rest = label_lines[1:] + ["  " + line for line in textwrap.wrap(reason, width - 2)]
    title = label_lines[0] + "".join("\n" + " " * CHOICE_INDENT + line for line in rest)
    return questionary.Choice(title=[("class:disabled", title)], value=value, disabled=True)


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
