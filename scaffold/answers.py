"""Turn flags (and, in a terminal, the wizard's answers) into a valid set of answers."""

from collections.abc import Callable
from typing import Any

from scaffold import questions as qs
from scaffold.detect import detect_hardware

# Asks one question: (question, default or None, answers so far) -> answer.
Ask = Callable[[qs.Question, Any, dict[str, Any]], Any]


class AnswerError(Exception):
    """An answer is missing, unknown or impossible; the message says what would work."""


def collect(given: dict[str, Any], ask: Ask | None = None) -> dict[str, Any]:
    """Answer every question that applies, in copier.yml's order.

    `given` holds answers from flags. With `ask` (the wizard) missing answers are asked
    for; without it they take their default, or fail with the flag to pass.
    """
    answers: dict[str, Any] = {}
    for q in qs.questions():
        if not qs.is_asked(q, answers):
            continue
        if given.get(q.name) is not None:
            answer = given[q.name]
        else:
            fallback = _default(q, answers)
            if ask is not None:
                answer = ask(q, fallback, answers)
            elif fallback is None:
                raise AnswerError(_missing(q))
            else:
                answer = fallback
        answers[q.name] = qs.cast(q, answer)
        message = qs.problem(q, answers)
        if message:
            raise AnswerError(message)
    return answers


def _default(q: qs.Question, answers: dict[str, Any]) -> Any:
    # The machine knows better than copier.yml's static defaults.
    if q.name in ("hardware", "gpus"):
        hardware, gpus = detect_hardware()
        if q.name == "hardware":
            return hardware
        if gpus >= 2:
            return gpus
    return qs.default(q, answers)


def _missing(q: qs.Question) -> str:
    hint = f" (one of: {', '.join(map(str, q.values))})" if q.choices else ""
    return f"{q.flag} is required when not running interactively{hint}."
