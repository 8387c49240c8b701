"""The memory plan: what each GPU holds for a set of answers, and what would fit instead.

The numbers come from templates/plan/memory_plan.json.jinja, the Jinja that copier.yml's
gpu_memory validator and the project README render too, so `scaffold new`, `copier copy`
and `copier update` agree. This module finds a model's config.json (shipped with the
template, in a local directory, or on the hub), renders the plan, prints it, and searches
the answers that would fit when it does not.
"""

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaffold.questions import jinja_env
from scaffold.template import template_root

GIB = 1024**3
PLAN_TEMPLATE = "templates/plan/memory_plan.json.jinja"
MODELS_DIR = "templates/plan/models"
HUB_TIMEOUT_S = 3.0
# config.json fields the plan reads; a recorded answer keeps only these.
SHAPE_KEYS = (
    "model_type",
    "num_hidden_layers",
    "n_layer",
    "hidden_size",
    "n_embd",
    "num_attention_heads",
    "n_head",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "n_inner",
    "vocab_size",
    "n_positions",
    "max_position_embeddings",
    "tie_word_embeddings",
    "attention_bias",
)


class ModelSizeUnknown(Exception):
    """Neither scaffold nor the hub could say how big a model is; the message says what to do."""


@dataclass(frozen=True)
class Phase:
    title: str
    strategy: str
    rows: tuple[tuple[str, int], ...]  # (what, bytes per GPU)
    total: int  # bytes the GPU will show
    need: int  # bytes that must fit (below `total` where vLLM reserves more than it needs)


@dataclass(frozen=True)
class Plan:
    model: str
    gpu_memory: int  # GiB per GPU
    phases: tuple[Phase, ...]
    peak: int  # bytes: the largest phase's need

    @property
    def known(self) -> bool:
        return bool(self.phases)

    @property
    def fits(self) -> bool:
        return self.peak <= self.gpu_memory * GIB


def applies(answers: dict[str, Any]) -> bool:
    """Plans are per GPU: CPU and MPS projects have none."""
    return answers.get("hardware") in ("cuda", "multi-gpu")


def shipped_config(model: str) -> dict[str, Any] | None:
    path = template_root() / MODELS_DIR / f"{model.replace('/', '--')}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def find_config(model: str) -> dict[str, Any]:
    """The config.json of a model scaffold does not ship: a local directory's, or the hub's."""
    local = Path(model).expanduser()
    if local.is_dir():
        return read_config(local)
    if local.suffix or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelSizeUnknown(f"--model {model}: no such directory. {_HOW_TO_SIZE}")
    return _hub_config(model)


def read_config(path: str | Path) -> dict[str, Any]:
    """The plan's fields of a config.json, given the file or the directory holding it."""
    path = Path(path).expanduser()
    file = path / "config.json" if path.is_dir() else path
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ModelSizeUnknown(f"cannot read {file}: {error}. {_HOW_TO_SIZE}") from error
    return _shape_fields(config)


def _shape_fields(config: dict[str, Any]) -> dict[str, Any]:
    # Multimodal models keep the language model's shape under text_config.
    config = {**config, **config.get("text_config", {})}
    fields = {key: config[key] for key in SHAPE_KEYS if config.get(key) is not None}
    if not ({"hidden_size", "n_embd"} & fields.keys() and "vocab_size" in fields):
        raise ModelSizeUnknown(f"this config.json has no hidden_size/vocab_size. {_HOW_TO_SIZE}")
    return fields


_HOW_TO_SIZE = (
    "Give scaffold the model's size: --model /path/to/model (a directory with its "
    "config.json), or --model-config /path/to/config.json."
)


def _hub_config(model: str) -> dict[str, Any]:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise ModelSizeUnknown(
            f"scaffold does not know {model}'s size (HF_HUB_OFFLINE). {_HOW_TO_SIZE}"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/{model}/resolve/main/config.json"
    try:
        with urllib.request.urlopen(url, timeout=HUB_TIMEOUT_S) as response:  # noqa: S310
            return _shape_fields(json.load(response))
    except (OSError, ValueError) as error:  # URLError, timeouts and bad JSON
        reason = getattr(error, "reason", error)
        raise ModelSizeUnknown(
            f"scaffold does not know {model}'s size and could not read {url} ({reason}). "
            f"{_HOW_TO_SIZE}"
        ) from error


def config_answer(value: Any) -> dict[str, Any]:
    """--model-config: a path to config.json (or its directory), or the mapping itself."""
    if isinstance(value, dict):
        return value
    if Path(str(value)).expanduser().exists():
        return read_config(str(value))
    parsed = yaml.safe_load(str(value))
    return _shape_fields(parsed) if isinstance(parsed, dict) and parsed else {}


def plan(answers: dict[str, Any], micro_batch: int | None = None) -> Plan:
    """Render the plan for `answers` (optionally at another micro-batch)."""
    context = dict(answers)
    if micro_batch is not None:
        context["plan_micro_batch"] = micro_batch
    raw = json.loads(jinja_env().get_template(PLAN_TEMPLATE).render(**context))
    phases = tuple(
        Phase(p["title"], p["strategy"], tuple(map(tuple, p["rows"])), p["total"], p["need"])
        for p in raw["phases"]
    )
    return Plan(answers["model"], answers["gpu_memory"], phases, raw["peak"])


def gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def table(p: Plan) -> str:
    """The plan as aligned text: one column per phase, GiB per GPU."""
    labels = [label for phase in p.phases for label, _ in phase.rows]
    labels = list(dict.fromkeys(labels))
    header = ["per GPU (GiB)", *(phase.title for phase in p.phases)]
    body = [
        [label, *(gib(dict(phase.rows).get(label, 0)) for phase in p.phases)] for label in labels
    ]
    body.append(["total", *(gib(phase.total) for phase in p.phases)])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    strategies = [f"  {phase.title}: {phase.strategy}" for phase in p.phases]
    return "\n".join(["  " + line for line in lines] + strategies)


def alternatives(given: dict[str, Any]) -> list[tuple[str, Plan]]:
    """Answers near the user's flags that fit, as (flags, plan), smallest change first:
    another scale, more GPUs, more nodes, a bigger GPU."""
    from scaffold.answers import AnswerError, collect  # answers imports this module

    options: list[dict[str, Any]] = [{"scale": s} for s in ("small", "medium", "large")]
    options += [
        {"hardware": "multi-gpu", "gpus": g, "nodes": 1, "scale": s}
        for g in (2, 4, 8)
        for s in ("medium", "large")
    ]
    options += [{"hardware": "multi-gpu", "gpus": 8, "nodes": n, "scale": "large"} for n in (2, 4)]
    options += [{"gpu_memory": m} for m in (94, 141, 192)]
    found: list[tuple[str, Plan]] = []
    for change in options:
        if all(given.get(k) == v for k, v in change.items()):
            continue
        try:
            answers = collect({**given, **change})
        except AnswerError:  # invalid, or does not fit either
            continue
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in change.items())
        found.append((flags, plan(answers)))
    return found


def refusal(given: dict[str, Any], answers: dict[str, Any]) -> str:
    """Why `answers` do not fit, with the plan's figures and what would (from `given`)."""
    p = plan(answers)
    world = answers.get("gpus", 1) * answers.get("nodes", 1)
    where = "one GPU" if answers["hardware"] == "cuda" else f"each of {world} GPUs"
    lines = [
        f"{answers['model']} ({answers['task']}, {answers['scale']} scale) does not fit "
        f"{where} of {answers['gpu_memory']} GiB: the memory plan needs {gib(p.peak)} GiB "
        "per GPU.",
        table(p),
    ]
    single = plan(answers, micro_batch=1)
    if single.fits:
        lines.append(f"A micro-batch of 1 would need {gib(single.peak)} GiB per GPU.")
    # The same model keeps its recorded config.json; a default model of another scale is shipped.
    fitting = alternatives({**given, "model_config": answers.get("model_config")})[:6]
    if fitting:
        lines.append("What would fit:")
        lines += [f"  {flags}: {gib(alt.peak)} GiB per GPU" for flags, alt in fitting]
    else:
        lines.append("Nothing nearby fits: choose a smaller --model.")
    return "\n".join(lines)
