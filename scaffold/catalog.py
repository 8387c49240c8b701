"""Every task x hardware x scale combination and whether it renders, from copier.yml.

`scaffold list` prints this and the docs gallery's index is built from it; the verdicts
come from copier.yml's own validators (through `answers.collect`), so neither can
disagree with what `scaffold new` accepts.
"""

from typing import NamedTuple

from scaffold import questions as qs
from scaffold.answers import AnswerError, collect


class Combination(NamedTuple):
    task: str
    hardware: str
    scales: list[str]  # the scales that render, in copier.yml's order
    unavailable: str | None  # why nothing renders (e.g. the task is not built yet)


def combinations() -> list[Combination]:
    """Task x hardware in copier.yml's order, with the scales each accepts."""
    rows = []
    for task in qs.question("task").values:
        for hardware in qs.question("hardware").values:
            scales, reasons = [], []
            for scale in qs.question("scale").values:
                reason = refusal(task, hardware, scale)
                if reason is None:
                    scales.append(scale)
                else:
                    reasons.append(reason)
            unavailable = None if scales else _common(reasons)
            rows.append(Combination(task, hardware, scales, unavailable))
    return rows


def refusal(task: str, hardware: str, scale: str) -> str | None:
    """copier.yml's reason for refusing this combination, or None if it renders."""
    # Static defaults for everything else (never this machine's detected GPU count), so
    # the listing is the same on every machine.
    given = {"project_name": "demo", "task": task, "hardware": hardware, "scale": scale}
    given |= {"gpus": qs.question("gpus").default, "nodes": qs.question("nodes").default}
    try:
        collect(given)
    except AnswerError as error:
        return str(error)
    return None


def _common(reasons: list[str]) -> str:
    # A task that is not built yet gives the same reason at every scale: say it once.
    return reasons[0] if len(set(reasons)) == 1 else "; ".join(reasons)


def table() -> str:
    """A plain-text table for the terminal."""
    rows = [("TASK", "HARDWARE", "SCALES")]
    unavailable: dict[str, str] = {}
    for combo in combinations():
        if combo.scales:
            rows.append((combo.task, combo.hardware, ", ".join(combo.scales)))
        else:
            unavailable.setdefault(combo.task, combo.unavailable or "")
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows]
    tasks_out = [task for task, reason in unavailable.items() if "not available yet" in reason]
    if tasks_out:
        lines += ["", f"Not available yet: {', '.join(tasks_out)}."]
    return "\n".join(lines)
