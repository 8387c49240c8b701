"""R-CONFIG: the rendered config.py (shared by every task) parses YAML + CLI overrides."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BASE = {
    "model": {"name": "./models/tiny", "dropout": 0.1},
    "data": {"train_file": "../data/train.jsonl"},
    "training": {"lr": 3e-4, "steps": 10, "compile": False, "wandb_project": None, "name": "a"},
}


@pytest.fixture(scope="module")
def config_py(render) -> Path:
    return render("pretraining", "cpu") / "config.py"


@pytest.fixture
def load(config_py, tmp_path):
    spec = importlib.util.spec_from_file_location("rendered_config", config_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_file = tmp_path / "configs" / "train.yaml"
    config_file.parent.mkdir()
    config_file.write_text(yaml.safe_dump(BASE))

    def _load(*overrides: str):
        return module.load_config(["--config", str(config_file), *overrides])

    return _load


def test_scientific_notation_booleans_and_null_parse_as_values(load):
    config, _ = load("--training.lr", "6e-4", "--training.compile", "true", "--model.dropout=0")
    assert config["training"]["lr"] == 6e-4 and isinstance(config["training"]["lr"], float)
    assert config["training"]["compile"] is True
    assert config["model"]["dropout"] == 0
    config, _ = load("--training.wandb_project", "my-project", "--training.name", "null")
    assert config["training"]["wandb_project"] == "my-project"
    assert config["training"]["name"] is None


def test_an_override_of_the_wrong_type_is_an_error(load, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load("--training.steps", "many")
    assert exit_info.value.code == 2
    assert "--training.steps expects int" in capsys.readouterr().err


def test_an_unknown_key_is_an_error_with_a_suggestion(load, capsys):
    with pytest.raises(SystemExit):
        load("--training.learning_rat", "1e-3")
    with pytest.raises(SystemExit):
        load("--trainin.lr", "1e-3")
    err = capsys.readouterr().err
    assert "unknown config key --training.learning_rat" in err
    assert "unknown config key --trainin" in err and "did you mean --training" in err


def test_relative_paths_resolve_against_the_config_file(load, tmp_path):
    config, _ = load()
    assert config["data"]["train_file"] == str(tmp_path / "data" / "train.jsonl")
    assert config["model"]["name"] == str(tmp_path / "configs" / "models" / "tiny")


def test_resume_flag_takes_an_optional_checkpoint(load):
    assert load()[1].resume is None
    assert load("--resume")[1].resume == "latest"
    assert load("--resume", "runs/x/ckpt_000010.pt")[1].resume == "runs/x/ckpt_000010.pt"


def test_a_missing_config_file_is_a_clear_error(config_py, tmp_path):
    result = subprocess.run(
        [sys.executable, str(config_py), "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "config file not found" in result.stderr and "Traceback" not in result.stderr
