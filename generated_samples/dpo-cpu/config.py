"""Configuration: one YAML file plus `--section.key value` overrides (R-CONFIG).

    python train.py --config configs/train.yaml --training.lr 3e-4

Overrides are parsed as YAML scalars (so `6e-4`, `true` and `null` mean what they
say) and must match the type of the value they replace. Unknown keys are errors.
Relative paths in the file resolve against the file's own directory, so a config
works from any working directory.
"""

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# Keys whose string values are filesystem paths.
PATH_SUFFIXES = ("_dir", "_path", "_file")


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where `6e-4` is a string; read it as the float it means."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_config(argv: list[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
    """Parse the command line and return (config, args)."""
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
    args, overrides = parser.parse_known_args(argv)

    if not args.config.is_file():
        parser.error(f"config file not found: {args.config}")
    with args.config.open() as f:
        config = yaml.load(f, _Loader) or {}
    if not isinstance(config, dict):
        parser.error(f"{args.config} must hold a mapping of sections")

    for key, raw in _pairs(overrides, parser):
        _apply_override(config, key, raw, parser)
    _resolve_paths(config, args.config.resolve().parent)
    return config, args


def _pairs(overrides: list[str], parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    pairs = []
    items = iter(overrides)
    for item in items:
        if not item.startswith("--"):
            parser.error(f"unexpected argument {item!r}; overrides look like --section.key value")
        key, sep, raw = item[2:].partition("=")
        if not sep:
            raw = next(items, None)
            if raw is None:
                parser.error(f"--{key} needs a value")
        pairs.append((key, raw))
    return pairs


def _apply_override(config: dict, key: str, raw: str, parser: argparse.ArgumentParser) -> None:
    *sections, leaf = key.split(".")
    node = config
    for depth, section in enumerate(sections):
        if not isinstance(node.get(section), dict):
            _unknown(parser, ".".join(sections[: depth + 1]), node)
        node = node[section]
    if leaf not in node:
        _unknown(parser, key, node)

    old = node[leaf]
    new = yaml.load(raw, _Loader)
    if old is not None and new is not None and not _same_type(old, new):
        parser.error(f"--{key} expects {type(old).__name__} (like {old!r}), got {raw!r}")
    node[leaf] = new


def _same_type(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float))
    return isinstance(new, type(old))


def _unknown(parser: argparse.ArgumentParser, key: str, node: dict) -> None:
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: -len(leaf)]
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1)
    hint = f"; did you mean --{prefix}{close[0]}?" if close else ""
    parser.error(f"unknown config key --{key}{hint}")


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
