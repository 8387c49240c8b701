"""`scaffold list`: every task x hardware and its valid scales, from copier.yml."""

import subprocess
import sys

from scaffold import questions as qs
from scaffold.catalog import combinations, refusal


def test_list_prints_every_renderable_combination_with_its_scales():
    result = subprocess.run(
        [sys.executable, "-m", "scaffold", "list"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split(None, 2)) for line in result.stdout.splitlines() if line.strip()}
    for combo in combinations():
        if combo.scales:
            assert (combo.task, combo.hardware, ", ".join(combo.scales)) in rows


def test_scales_are_copier_ymls_verdicts():
    by_pair = {(c.task, c.hardware): c for c in combinations()}
    tasks, hardware = qs.question("task").values, qs.question("hardware").values
    assert set(by_pair) == {(t, h) for t in tasks for h in hardware}
    for (task, hw), combo in by_pair.items():
        for scale in qs.question("scale").values:
            assert (scale in combo.scales) == (refusal(task, hw, scale) is None)
    # R-SCALE-FITS-HW as copier.yml states it today.
    available = [c for c in by_pair.values() if c.scales]
    assert all(c.scales == ["small"] for c in available if c.hardware == "cpu")
    assert all("large" in c.scales for c in available if c.hardware == "multi-gpu")
