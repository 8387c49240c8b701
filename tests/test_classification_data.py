"""R-DATA-VALIDATION for classification: the rendered load_data rejects bad files clearly."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest


def _load_data(project: Path):
    """Import the rendered train.py's load_data (train.py imports config.py from its folder)."""
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location(f"train_{project.name}", project / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
        # Forget the project's own modules (config, interruptions, ...): the next render
        # imported in this process has its own, which may differ by hardware.
        for name, loaded in list(sys.modules.items()):
            if str(getattr(loaded, "__file__", None) or "").startswith(str(project)):
                del sys.modules[name]
    return module.load_data


# load_data is the same in every render of a scale: run it for real on one render per scale.
@pytest.mark.parametrize(
    "hardware, scale", [("cpu", "small"), ("mps", "medium"), ("multi-gpu", "large")]
)
def test_bad_data_is_reported_with_the_file_and_the_schema(render, hardware, scale, tmp_path):
    """R-DATA-VALIDATION"""
    load_data = _load_data(render("classification", hardware, scale))
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "fine", "label": "a"}) + "\n")
    cases = {
        "missing.jsonl": None,
        "no_label.jsonl": {"text": "hello"},
        "empty_text.jsonl": {"text": "  ", "label": "a"},
    }
    for name, row in cases.items():
        bad = tmp_path / name
        if row is not None:
            bad.write_text(json.dumps({"text": "ok", "label": "a"}) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(SystemExit) as error:
            load_data({"train_file": str(good), "validation_file": str(bad)})
        message = str(error.value)
        assert name in message and '"text"' in message and '"label"' in message, message
