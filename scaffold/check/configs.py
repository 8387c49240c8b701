"""YAML configs handed as-is to TrainingArguments or a TRL config (`SFTConfig(**cfg["training"])`):
the argument rules apply to their keys, and a project's owner edits them more than the code."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from scaffold.check.files import LOADER
from scaffold.check.findings import Finding
from scaffold.check.huggingface import strategy_mismatch
from scaffold.check.registry import check
from scaffold.check.source import Project, is_suppressed

# Keys that mark a mapping as TrainingArguments (or a TRL config built on it).
TRAINING_KEYS = {
    "output_dir",
    "per_device_train_batch_size",
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "gradient_accumulation_steps",
    "eval_strategy",
    "evaluation_strategy",
    "save_strategy",
    "logging_steps",
}

Section = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node)


@dataclass
class Config:
    path: str  # as shown in findings
    text: str
    documents: list[yaml.Node]
    project: Project

    def finding(self, node: yaml.Node, check_name: str, message: str, fix: str) -> Finding:
        from scaffold.check.registry import CHECKS

        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        return Finding(self.path, line, column, CHECKS[check_name].rule, check_name, message, fix)

    def suppressed(self, finding: Finding) -> bool:
        return is_suppressed(self.text, finding)


def parse_config(path: Path, shown: str, project: Project) -> Config:
    """Read `path`; raises yaml.YAMLError, UnicodeDecodeError or OSError."""
    text = path.read_text(encoding="utf-8")
    return Config(shown, text, list(yaml.compose_all(text, Loader=LOADER)), project)


def training_sections(config: Config) -> Iterator[Section]:
    """Mappings that look like TrainingArguments: at least two of its usual keys."""
    stack = list(config.documents)
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            section = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if len(TRAINING_KEYS & section.keys()) >= 2:
                yield section
            stack.extend(v for _, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def scalar(section: Section, key: str, default: object = None) -> object:
    """The key's value as YAML reads it (`true` -> True, `0.0` -> 0.0)."""
    if key not in section:
        return default
    node = section[key][1]
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    return yaml.load(node.value, Loader=LOADER)  # the resolved bool, int, float or null


@check(
    "config-removed-evaluation-strategy",
    "R-EVAL-STRATEGY",
    "evaluation_strategy: in a TrainingArguments config (now eval_strategy)",
    kind="config",
)
def config_removed_evaluation_strategy(config: Config) -> Iterator[Finding]:
    for section in training_sections(config):
        if "evaluation_strategy" in section:
            yield config.finding(
                section["evaluation_strategy"][0],
                "config-removed-evaluation-strategy",
                "evaluation_strategy no longer exists in transformers 5: TypeError at start",
                "rename the key to eval_strategy",
            )


REMOVED_KEYS = {
    "no_cuda": "use_cpu: true",
    "warmup_ratio": "warmup_steps: <a float below 1, the warmup ratio>",
}


@check(
    "config-removed-argument",
    "R-USE-LIBRARY",
    "no_cuda:, warmup_ratio: or (for TRL's SFT) max_seq_length: in a training config",
    kind="config",
)
def config_removed_argument(config: Config) -> Iterator[Finding]:
    uses_sft = any(name.endswith(("SFTConfig", "SFTTrainer")) for name in config.project.calls)
    for section in training_sections(config):
        for key, (key_node, _) in section.items():
            fix = REMOVED_KEYS.get(key)
            if key == "max_seq_length" and uses_sft:
                fix = "max_length: ..."
            if fix:
                yield config.finding(
                    key_node,
                    "config-removed-argument",
                    f"{key} no longer exists in transformers 5 / TRL 1: TypeError at start",
                    fix,
                )


@check(
    "config-best-model-strategy-mismatch",
    "R-EVAL-STRATEGY",
    "load_best_model_at_end: true in a config whose eval and save schedules differ",
    kind="config",
)
def config_best_model_strategy_mismatch(config: Config) -> Iterator[Finding]:
    for section in training_sections(config):
        if scalar(section, "load_best_model_at_end") is not True:
            continue
        problem = strategy_mismatch(
            scalar(section, "eval_strategy", "no"),
            scalar(section, "save_strategy", "steps"),
            scalar(section, "eval_steps"),
            scalar(section, "save_steps", 500),
        )
        if problem:
            yield config.finding(
                section["load_best_model_at_end"][0],
                "config-best-model-strategy-mismatch",
                "load_best_model_at_end needs a saved checkpoint at every evaluation: "
                f"{problem} (transformers raises)",
                "give eval_strategy and save_strategy the same value (and save_steps a "
                "multiple of eval_steps)",
            )


@check(
    "config-beta-zero",
    "R-REF-FROZEN",
    "beta: 0 in a DPO/GRPO config: no KL penalty",
    kind="config",
)
def config_beta_zero(config: Config) -> Iterator[Finding]:
    for section in training_sections(config):
        if (
            "beta" in section
            and scalar(section, "beta") in (0, 0.0)
            and not isinstance(scalar(section, "beta"), bool)
        ):
            yield config.finding(
                section["beta"][1],
                "config-beta-zero",
                "beta 0: nothing keeps the policy near the reference, and it drifts",
                "beta: 0.1 for DPO; 0.04-0.1 for GRPO",
            )


@check(
    "config-pin-memory-on-mps",
    "R-PIN-MEMORY",
    "dataloader_pin_memory: true in a project generated for Apple MPS",
    kind="config",
)
def config_pin_memory_on_mps(config: Config) -> Iterator[Finding]:
    if config.project.hardware != "mps":
        return
    for section in training_sections(config):
        if scalar(section, "dataloader_pin_memory") is True:
            yield config.finding(
                section["dataloader_pin_memory"][1],
                "config-pin-memory-on-mps",
                "pin_memory on MPS: PyTorch warns and pins nothing",
                "dataloader_pin_memory: false",
            )
