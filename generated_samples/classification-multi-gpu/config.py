"""Configuration: one YAML file plus `--section.key value` overrides (R-CONFIG).

    python train.py --config configs/train.yaml --training.learning_rate 3e-5

Overrides are parsed as YAML scalars (so `6e-4`, `true` and `null` mean what they
say) and must match the type of the value they replace; where a string is expected the
value stays a string (`--training.eval_strategy no`). Unknown keys are errors.
A section passed to a library config (TrainingArguments) takes every field of it,
from the file or the command line, checked against the field's type.
Every value is checked before anything runs: nulls, ranges and choices below.
Relative paths in the file resolve against the file's own directory, so a config works
from any working directory; paths on the command line resolve against the working directory.

A mistake stops the run with one message and exit status 2 (command line or config) or 1
(anything else); add `--debug` to the same command to see the traceback as well.
"""

import argparse
import atexit
import difflib
import enum
import functools
import os
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import yaml
from transformers import TrainingArguments

# Keys whose string values are filesystem paths.
PATH_SUFFIXES = ("_dir", "_path", "_file")

# Sections passed as-is to a library config: they take any of its fields, and null where
# a field's type allows it; any other null is an error.
LIBRARY_SECTIONS: dict[str, type] = {"training": TrainingArguments}

# What numbers may be: each condition, and the keys it applies to when they are set.
CONDITIONS = {
    ">= 0": lambda value: value >= 0,
    ">= 1": lambda value: value >= 1,
    "> 0": lambda value: value > 0,
    ">= 1, or -1 to train num_train_epochs": lambda value: value >= 1 or value == -1,
}
LIMITS = {
    "data.max_length": ">= 1",
    "early_stopping.patience": ">= 1",
    "training.learning_rate": "> 0",
    "training.num_train_epochs": "> 0",
    "training.max_steps": ">= 1, or -1 to train num_train_epochs",
    "training.per_device_train_batch_size": ">= 1",
    "training.per_device_eval_batch_size": ">= 1",
    "training.gradient_accumulation_steps": ">= 1",
    "training.warmup_steps": ">= 0",
    "training.weight_decay": ">= 0",
    "training.max_grad_norm": ">= 0",
}


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `6e-4` is a string; read it as the float it means."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def fail(message: str) -> NoReturn:
    """A configuration error: one line naming the file, key or flag; exit status 2."""
    print(f"config error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(main: Callable[[], None]) -> NoReturn:
    """Run an entry point's `main`: any error is one message, with its traceback only
    under --debug (the messages this project raises already name the file, key or flag)."""
    debug = "--debug" in sys.argv[1:]
    try:
        main()
    except SystemExit as err:
        if debug and isinstance(err.code, str):  # a message: show where it was raised
            traceback.print_exc()
        # Also a clean stop (a signal's checkpoint is saved): it too must skip the teardown.
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
        exit_worker(1 if isinstance(err.code, str) else err.code or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        exit_worker(130)
    except Exception as err:
        if debug:
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        print("(run the same command with --debug to see the traceback)", file=sys.stderr)
        exit_worker(1)
    exit_worker(0)


def exit_worker(status: int) -> NoReturn:
    """R-DDP-INIT: a worker exits without the interpreter's teardown, once the exit hooks that
    matter have run while Python is whole (W&B's or MLflow's last sync, logging). A finished
    worker first destroys the process group (whoever set it up); a failed one leaves it, as
    its peers may be gone. Left to the teardown, the communication threads aborted finished
    workers now and then (SIGABRT, "terminate called without an active exception"), and the
    launcher reported a failed job; a worker that failed when its peer died outlived its
    launcher, whose watchdog thread cannot run once the teardown has begun."""
    dist = sys.modules.get("torch.distributed")  # imported by the entry point
    if status == 0 and dist is not None and dist.is_initialized():
        dist.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def load_config(argv: list[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
    """Parse the command line and return (config, args), every value checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML config file")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="resume from CHECKPOINT, or from the latest one in the output dir",
    )
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback")
    args, overrides = parser.parse_known_args(argv)

    config = _read(args.config)
    flags = set()
    for key, raw in _pairs(overrides):
        _apply_override(config, key, raw)
        flags.add(key)
    _resolve_paths(config, args.config.resolve().parent)
    _check(config, lambda key: f"--{key}" if key in flags else f"{args.config}: {key}")
    return config, args


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        fail(f"config file not found: {path} (--config)")
    try:
        with path.open() as f:
            config = yaml.load(f, _Loader) or {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        context = ""
        if err.context and err.context_mark:
            context = f" ({err.context} on line {err.context_mark.line + 1})"
        fail(f"{where}: not valid YAML: {err.problem}{context}")
    if not isinstance(config, dict):
        fail(f"{path} must hold a mapping of sections (section: then indented key: value lines)")
    return config


def _pairs(overrides: list[str]) -> list[tuple[str, str]]:
    pairs = []
    items = iter(overrides)
    for item in items:
        if not item.startswith("--"):
            fail(f"unexpected argument {item!r}; overrides look like --section.key value")
        key, sep, raw = item[2:].partition("=")
        if not sep:
            raw = next(items, None)
            if raw is None:
                fail(f"--{key} needs a value")
        pairs.append((key, raw))
    return pairs


def _apply_override(config: dict, key: str, raw: str) -> None:
    *sections, leaf = key.split(".")
    if sections and sections[0] in LIBRARY_SECTIONS:
        _set_library_field(config, key, raw)
        return
    node = config
    for depth, section in enumerate(sections):
        if section in node and not isinstance(node[section], dict):
            where = ".".join(sections[: depth + 1])
            fail(f"--{key}: {where} is a value, not a section; set it with --{where} VALUE")
        if section not in node:
            _unknown(".".join(sections[: depth + 1]), node)
        node = node[section]
    if leaf not in node:
        _unknown(key, node)
    node[leaf] = _plain_value(key, raw, node[leaf])


def _plain_value(key: str, raw: str, old: Any) -> Any:
    """`raw` read as the type of the value it replaces (any type where that is null)."""
    new = _command_line_path(key, yaml.load(raw, _Loader))
    if old is None or new is None or _same_type(old, new):
        return new
    if isinstance(old, str):
        return _command_line_path(key, raw)  # `no`, `1` or `2024` where a string belongs
    fail(f"--{key} expects {type(old).__name__} (like {old!r}), got {raw!r}")


def _command_line_path(key: str, value: Any) -> Any:
    """A path given on the command line means what the shell means: from the working directory."""
    if isinstance(value, str) and _is_path(key.rsplit(".", 1)[-1], value):
        return str(Path(value).resolve())
    return value


def _same_type(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    return isinstance(new, type(old))


def _unknown(key: str, node: dict, names: list[str] | None = None) -> NoReturn:
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: -len(leaf)]
    close = difflib.get_close_matches(leaf, names or [str(k) for k in node], n=1)
    hint = f"; did you mean --{prefix}{close[0]}?" if close else ""
    fail(f"unknown config key --{key}{hint}")


@functools.cache
def _accepted(cls: type) -> dict[str, tuple[tuple[type, ...], list[str]]]:
    """Each init field of the dataclass `cls`: the YAML types its annotation allows, and
    its choices where the annotation names an Enum (as `lr_scheduler_type` does)."""
    hints = typing.get_type_hints(cls)
    accepted = {}
    for field in cls.__dataclass_fields__.values():
        if not field.init:
            continue
        hint = hints[field.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed: set[type] = set()
        choices: list[str] = []
        for arg in typing.get_args(hint) if union else (hint,):
            if arg is Any:
                allowed.add(object)
            elif isinstance(arg, type) and issubclass(arg, enum.Enum):
                allowed.add(str)
                choices += [member.value for member in arg]
            elif typing.get_origin(arg) is typing.Literal:
                allowed.update(type(value) for value in typing.get_args(arg))
            else:
                allowed.add(typing.get_origin(arg) or arg)
        if float in allowed:
            allowed.add(int)
        accepted[field.name] = (tuple(allowed), choices)
    return accepted


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to a config
        return bool in allowed or object in allowed
    return isinstance(value, allowed)


def _set_library_field(config: dict, key: str, raw: str) -> None:
    """`raw` read as the type of the library field it sets; a string where one is allowed."""
    section, _, leaf = key.partition(".")
    if "." in leaf:
        field = f"{section}.{leaf.split('.')[0]}"
        fail(f"--{key}: {field} is a value, not a section; set it with --{field} VALUE")
    if not isinstance(config.get(section), dict):
        fail(f"--{key}: {section} must be a section in the config file")
    accepted = _accepted(LIBRARY_SECTIONS[section])
    if leaf not in accepted:
        _unknown(key, {}, list(accepted))
    allowed, _ = accepted[leaf]
    value = yaml.load(raw, _Loader)
    if not _fits(value, allowed) and str in allowed:
        value = raw  # `--training.eval_strategy no`: YAML would read a boolean
    config[section][leaf] = _command_line_path(key, value)


def _check_library_section(section: str, cls: type, values: Any, origin) -> None:
    """Every key of `section` is a field of `cls`, of a type and value it accepts."""
    if not isinstance(values, dict):
        fail(f"{origin(section)} must be a section of {cls.__name__} fields")
    accepted = _accepted(cls)
    for leaf, value in values.items():
        key = f"{section}.{leaf}"
        if leaf not in accepted:
            close = difflib.get_close_matches(str(leaf), list(accepted), n=1)
            hint = f"; did you mean {section}.{close[0]}?" if close else ""
            fail(f"{origin(key)} is not a field of {cls.__name__}{hint}")
        allowed, choices = accepted[leaf]
        if value is None and type(None) not in allowed:
            fail(f"{origin(key)} cannot be null: give it a value")
        if not _fits(value, allowed):
            names = " or ".join(sorted("null" if t is type(None) else t.__name__ for t in allowed))
            quote = ' (write it in quotes: "no")' if isinstance(value, bool) and choices else ""
            fail(f"{origin(key)} expects {names}, got {value!r}{quote}")
        if choices and isinstance(value, str) and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            fail(f"{origin(key)} must be one of {', '.join(choices)}; got {value!r}{hint}")


def _check(config: dict, origin) -> None:
    """Check nulls, ranges and library fields; `origin(key)` names where `key` was set."""
    for section, cls in LIBRARY_SECTIONS.items():
        _check_library_section(section, cls, config.get(section, {}), origin)
    for key, value in _leaves(config):
        if value is None and key.split(".", 1)[0] not in LIBRARY_SECTIONS:
            fail(f"{origin(key)} cannot be null: give it a value")
        condition = LIMITS.get(key)
        if condition is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"{origin(key)} must be a number {condition}, got {value!r}")
        if not CONDITIONS[condition](value):
            fail(f"{origin(key)} must be {condition}, got {value!r}")


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, Any]]:
    leaves = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            leaves += _leaves(value, f"{prefix}{key}.")
        else:
            leaves.append((f"{prefix}{key}", value))
    return leaves


def _resolve_paths(node: dict, base: Path) -> None:
    for key, value in node.items():
        if isinstance(value, dict):
            _resolve_paths(value, base)
        elif isinstance(value, str) and _is_path(str(key), value):
            node[key] = str((base / value).resolve())


def _is_path(key: str, value: str) -> bool:
    if value.startswith(("./", "../")):
        return True
    return key.endswith(PATH_SUFFIXES) and not Path(value).is_absolute()


if __name__ == "__main__":  # print the merged config: python config.py --config ...
    yaml.safe_dump(load_config(sys.argv[1:])[0], sys.stdout, sort_keys=False)
