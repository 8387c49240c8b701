"""Turn flags (and, in a terminal, the wizard's answers) into a valid set of answers."""

from collections.abc import Callable
from typing import Any

from scaffold import memory_plan
from scaffold import questions as qs
from scaffold.detect import detect_hardware

# Asks one question: (question, default or None, answers so far) -> answer.
Ask = Callable[[qs.Question, Any, dict[str, Any]], Any]


class AnswerError(Exception):
    """An answer is missing, unknown or impossible; the message says what would work."""


class DoesNotFit(AnswerError):
    """The memory plan needs more than --gpu-memory; `refusal()` says what would fit."""

    def __init__(self, message: str, given: dict[str, Any], answers: dict[str, Any]):
        super().__init__(message)
        self.given, self.answers = given, answers

    def refusal(self) -> str:
        return memory_plan.refusal(self.given, self.answers)


def collect(given: dict[str, Any], ask: Ask | None = None) -> dict[str, Any]:
    """Answer every question that applies, in copier.yml's order.

    `given` holds answers from flags. With `ask` (the wizard) missing answers are asked
    for; without it they take their default, or fail with the flag to pass.
    """
    answers: dict[str, Any] = {}
    for q in qs.questions():
        if not qs.is_asked(q, answers):
            continue
        if q.name == "model_config":
            answer = _model_config(q, given.get(q.name), answers, ask)
        elif given.get(q.name) is not None:
            answer = given[q.name]
        elif ask is not None:
            answer = _ask_until_valid(q, ask, answers)
        else:
            answer = _default(q, answers)
            if answer is None:
                raise AnswerError(_missing(q))
        answers[q.name] = qs.cast(q, answer)
        message = qs.problem(q, answers)
        if message and q.name == "gpu_memory" and answers[q.name] >= 1:
            raise DoesNotFit(message, given, answers)
        if message:
            raise AnswerError(message)
    return answers


def _ask_until_valid(q: qs.Question, ask: Ask, answers: dict[str, Any]) -> Any:
    """The wizard's answer, asked again (with the validator's reason) until it is valid:
    one impossible combination must not throw away every answer given so far."""
    fallback = _default(q, answers)
    while True:
        answer = ask(q, fallback, answers)
        message = qs.problem(q, {**answers, q.name: qs.cast(q, answer)})
        if not message or q.name == "gpu_memory":  # a plan that does not fit lists options
            return answer
        print(f"{message} Try again.")
        fallback = answer


def inapplicable(given: dict[str, Any], answers: dict[str, Any]) -> str | None:
    """Why a flag the user gave does not apply to these answers, or None if all do.

    Copier drops the answer to a question whose `when` is false (--gpus for a CPU
    project); a flag typed on purpose and then ignored would mislead, so it is refused.
    """
    for q in qs.questions():
        if given.get(q.name) is None or q.name in answers:
            continue
        when = q.when.strip() if isinstance(q.when, str) else ""
        if when.startswith("{{") and when.endswith("}}") and when.count("{{") == 1:
            reason = f"copier.yml asks it only when {when[2:-2].strip()}"
        else:
            reason = "copier.yml does not ask it for these answers"
        hardware = f"--hardware {answers['hardware']}"
        return f"{q.flag} does not apply to this project ({hardware}; {reason}); drop it."
    return None


def _model_config(
    q: qs.Question, given: Any, answers: dict[str, Any], ask: Ask | None
) -> dict[str, Any]:
    """The config.json of a model scaffold does not ship: given, found, or asked for."""
    try:
        if given is not None:
            return memory_plan.config_answer(given)
        return memory_plan.find_config(answers["model"])
    except memory_plan.ModelSizeUnknown as error:
        if ask is None:
            raise AnswerError(str(error)) from error
        print(error)
        try:
            return memory_plan.config_answer(ask(q, "", answers))
        except memory_plan.ModelSizeUnknown as again:
            raise AnswerError(str(again)) from again


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
