"""The valid task x hardware x scale combinations, derived from copier.yml's validators."""

from itertools import product

from scaffold import questions as qs


def valid_combinations(tasks: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(task, hardware, scale) for every combination copier.yml accepts."""
    combos = []
    for task, hardware, scale in product(
        tasks or qs.question("task").values,
        qs.question("hardware").values,
        qs.question("scale").values,
    ):
        answers = {"project_name": "demo", "task": task, "hardware": hardware, "scale": scale}
        answers |= {"gpus": 2, "nodes": 1} if hardware == "multi-gpu" else {}
        if not any(qs.problem(qs.question(n), answers) for n in ("task", "scale")):
            combos.append((task, hardware, scale))
    return combos
