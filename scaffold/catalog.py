"""Every task x hardware combination and the scales it renders at, from copier.yml.

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


def combinations() -> list[Combination]:
    """Task x hardware in copier.yml's order, with the scales each accepts."""
    rows = []
    for task in qs.question("task").values:
        for hardware in qs.question("hardware").values:
            scales = [s for s in qs.question("scale").values if refusal(task, hardware, s) is None]
            rows.append(Combination(task, hardware, scales))
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


def table() -> str:
    """A plain-text table for the terminal."""
    rows = [("TASK", "HARDWARE", "SCALES")]
    rows += [(c.task, c.hardware, ", ".join(c.scales)) for c in combinations() if c.scales]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows]
    return "\n".join(lines)
