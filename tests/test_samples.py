"""generated_samples/ is exactly what the templates render now."""

import pytest
from test_cli import tree_digest

from scaffold.samples import SAMPLES, render_sample, sample_combinations, sample_name

COMBOS = sample_combinations()


def test_samples_cover_every_available_combination_and_nothing_else():
    expected = {sample_name(*c) for c in COMBOS}
    present = {p.name for p in SAMPLES.iterdir() if p.is_dir()}
    assert present == expected, "re-render with: python -m scaffold.samples"


@pytest.mark.parametrize("task, hardware", COMBOS, ids=[sample_name(*c) for c in COMBOS])
def test_sample_matches_what_the_templates_render_now(tmp_path, task, hardware):
    render_sample(task, hardware, tmp_path / "sample")
    committed = SAMPLES / sample_name(task, hardware)
    assert tree_digest(tmp_path / "sample") == tree_digest(
        committed
    ), f"{committed.name} is stale; re-render with: python -m scaffold.samples"
