"""Shared fixtures: render each combination once per test session."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from scaffold.answers import collect
from scaffold.render import render_project

Render = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def template_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repository cache of this test session's own, not the user's.

    Rendering from a checkout adds a snapshot version to the cache whenever the templates
    changed; tests (and the `scaffold` processes they start) must not pile those up in
    ~/.cache, nor see versions another session left there.
    """
    cache = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """render(task=..., hardware=..., scale="small", gpus=2, nodes=1) -> project dir.

    Renders through the same path as `scaffold new`; each combination renders once per
    session (and once per xdist worker), so treat the result as read-only.
    """
    cache: dict[tuple, Path] = {}

    def _render(task: str, hardware: str, scale: str = "small", **extra: object) -> Path:
        given = {"task": task, "hardware": hardware, "scale": scale, **extra}
        if hardware == "multi-gpu":
            given = {"gpus": 2, "nodes": 1, **given}
        key = tuple(sorted(given.items()))
        if key not in cache:
            name = "-".join([task, hardware, scale, *map(str, extra.values())])
            answers = collect({"project_name": "demo", **given})
            target = tmp_path_factory.mktemp("render") / name
            render_project(answers, target)
            cache[key] = target
        return cache[key]

    return _render


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Smoke runs take most of the time: start them first so xdist workers finish together.
    items.sort(key=lambda item: item.get_closest_marker("smoke") is None)
