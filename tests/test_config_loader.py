"""R-CONFIG: the rendered config.py (shared by every task) parses YAML + CLI overrides."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BASE = {
    "model": {"name": "./models/tiny", "dropout": 0.1},
    "data": {"train_file": "../data/train.jsonl", "tokenizer_vocab_size": None},
    "training": {"lr": 3e-4, "steps": 10, "compile": False, "peak_tflops": 989.0, "name": "a"},
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
    # The pretraining config's nullable keys: one null in the file, one given a value there.
    config, _ = load("--data.tokenizer_vocab_size", "320", "--training.peak_tflops", "null")
    assert config["data"]["tokenizer_vocab_size"] == 320
    assert config["training"]["peak_tflops"] is None


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


def test_a_string_key_stays_a_string_whatever_yaml_would_read(load):
    """R-CONFIG: `no`, `on` or `123` given for a string key are that string."""
    config, _ = load("--training.name", "no", "--model.name", "123")
    assert config["training"]["name"] == "no" and config["model"]["name"] == "123"


def test_null_is_refused_where_the_key_has_a_value(load, capsys):
    """R-CONFIG: null only where the file's value is null (or the key is listed nullable)."""
    with pytest.raises(SystemExit) as exit_info:
        load("--training.lr", "null")
    assert exit_info.value.code == 2
    assert "--training.lr cannot be null" in capsys.readouterr().err


def test_a_value_is_not_a_section(load, capsys):
    with pytest.raises(SystemExit):
        load("--training.lr.x", "1")
    err = capsys.readouterr().err
    assert "training.lr is a value, not a section" in err and "did you mean" not in err


def test_paths_on_the_command_line_resolve_against_the_working_directory(
    load, tmp_path, monkeypatch
):
    """R-CONFIG: the shell's relative path, not the config file's."""
    monkeypatch.chdir(tmp_path)
    config, _ = load("--data.train_file", "mine/train.jsonl")
    assert config["data"]["train_file"] == str(tmp_path / "mine" / "train.jsonl")


def test_a_yaml_syntax_error_names_the_file_and_line(config_py, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("training:\n  lr: 3e-4\n  steps: [1, 2\nmodel: {}\n")
    result = subprocess.run(
        [sys.executable, str(config_py), "--config", str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{broken}, line 4: not valid YAML" in result.stderr


@pytest.mark.parametrize("key, value", [("batch_size", "0"), ("max_steps", "-3"), ("lr", "0")])
def test_out_of_range_values_are_refused_before_anything_runs(render, key, value):
    """R-CONFIG: the pretraining config's limits, checked by `python config.py`."""
    project = render("pretraining", "cpu")
    result = subprocess.run(
        [sys.executable, "config.py", "--config", "configs/train.yaml", f"--training.{key}", value],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--training.{key} must be" in result.stderr


def test_a_library_section_takes_every_field_of_its_dataclass(render):
    """R-CONFIG: SFTConfig fields the YAML does not list, type-checked; strings stay strings."""
    project = render("sft", "cpu")
    result = subprocess.run(
        [
            *(sys.executable, "config.py", "--config", "configs/train.yaml"),
            *("--training.max_steps", "30", "--training.eval_strategy", "no"),
            *("--training.torch_compile_mode", "null"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    training = yaml.safe_load(result.stdout)["training"]
    assert training["max_steps"] == 30 and training["eval_strategy"] == "no"
    assert training["torch_compile_mode"] is None
