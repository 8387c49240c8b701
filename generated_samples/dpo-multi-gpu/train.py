"""Preference tuning of an instruct model with TRL's `DPOTrainer` (direct preference optimization).

    python train.py --config configs/train.yaml [--section.key value ...] [--resume [CHECKPOINT]]
    torchrun --nproc_per_node 8 train.py --config configs/train.yaml   # or launch/torchrun.sh

Data: JSON lines with a `prompt` and two answers to it, `chosen` (preferred) and `rejected`,
either chat messages (the model's chat template formats them) or plain strings, e.g.
data/train.jsonl. The policy learns to prefer `chosen` relative to a frozen reference: the
starting model (R-REF-FROZEN).
Scale small: full fine-tuning of every weight.
"""

import warnings
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, set_seed
from transformers.modeling_layers import GradientCheckpointingLayer
from trl import DPOConfig, DPOTrainer

from config import load_config, run
from interruptions import SaveAndStopOnSignal, checkpoint_to_resume, stop_with_the_launcher
from jsonl import as_dataset, read_jsonl, same_form

SCHEMA = (
    'one JSON object per line: {"prompt": [{"role": "user", "content": "..."}], '
    '"chosen": [{"role": "assistant", "content": "..."}], '
    '"rejected": [{"role": "assistant", "content": "..."}]}, or all three as non-empty strings'
)
FIELDS = ("prompt", "chosen", "rejected")


def _problem(value: object, field: str) -> str | None:
    """Why `value` is not a valid prompt or answer, or None when it is."""
    if isinstance(value, str):
        return None if value.strip() else f"empty {field}"
    if not isinstance(value, list) or not value:
        return f"{field} must be a non-empty string or list of messages"
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"{field} messages need a role and a content"
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return f"{field} has a message with empty content"
    if field != "prompt" and value[-1]["role"] != "assistant":
        return f"{field} must end with an assistant message"
    return None


def load_data(data_cfg: dict) -> DatasetDict:
    """Load the train/validation JSONL files and check them (R-DATA-VALIDATION)."""
    dataset = DatasetDict()
    for split in ("train", "validation"):
        path = data_cfg[f"{split}_file"]
        rows = read_jsonl(path, FIELDS, SCHEMA)
        for line, values in rows:
            row = tuple(values[field] for field in FIELDS)
            problem = next(filter(None, map(_problem, row, FIELDS)), None)
            if not problem and len({isinstance(value, str) for value in row}) > 1:
                problem = "prompt, chosen and rejected must all be strings or all be messages"
            elif not problem and row[1] == row[2]:
                problem = "chosen and rejected are the same: nothing to prefer"
            if problem:
                raise SystemExit(f"{path}, line {line}: {problem}\nExpected {SCHEMA}")
        same_form(rows, _form, "the form (strings or messages)", path, SCHEMA)
        dataset[split] = as_dataset(rows)
    return dataset


def _form(row: dict) -> str:
    return "strings" if isinstance(row["prompt"], str) else "messages"


def check_reference_frozen(trainer: DPOTrainer) -> str:
    """R-REF-FROZEN: the reference the policy is measured against never trains."""
    # Full fine-tuning: the trainer loaded a second copy of the starting model as the reference.
    if trainer.ref_model is None and trainer.args.precompute_ref_log_probs:
        return "log-probs of the starting model, computed before training"
    if trainer.ref_model is None or trainer.ref_model is trainer.model:
        raise SystemExit("the policy has no separate reference model")
    trainer.ref_model.requires_grad_(False)
    if any(p.requires_grad for p in trainer.ref_model.parameters()):
        raise SystemExit("the reference model has trainable parameters")
    return "a frozen copy of the starting model"


def compile_layers(model: torch.nn.Module) -> None:
    """Compile each decoder layer on its own (regional compilation, as torchtitan does).

    The layers are alike, so they share one compiled graph, built for any batch length: the
    first step compiles once, in about a minute, where the whole model would take several.
    Parameter names do not change: checkpoints load into an uncompiled model as they are.
    """
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise SystemExit(
            f"{type(model).__name__} has no transformers decoder layers "
            "(GradientCheckpointingLayer) to compile one by one: set model.compile_layers: false"
        )
    for layer in layers:
        layer.compile(dynamic=True)


def build_trainer(cfg: dict) -> DPOTrainer:
    """The trainer, with its data tokenized and its reference model frozen, ready to train."""
    model_cfg, data_cfg, training = cfg["model"], cfg["data"], dict(cfg["training"])
    if model_cfg["compile_layers"] and training.get("use_liger_kernel"):
        raise SystemExit(
            "model.compile_layers and training.use_liger_kernel do not go together: torch.compile "
            "cannot trace Liger's kernels. Turn one of them off."
        )
    if not torch.cuda.is_available():  # R-DEVICE: CPU processes talk over gloo (used by the tests)
        warnings.warn("CUDA is not available: training on CPU processes (slow)", stacklevel=2)
        training.update(use_cpu=True, bf16=False, dataloader_pin_memory=False, ddp_backend="gloo")
        training["use_liger_kernel"] = False  # its Triton kernels need a GPU
        model_cfg["compile_layers"] = False  # inductor's CPU kernels need a C++ compiler
    elif training["bf16"] and not torch.cuda.is_bf16_supported(including_emulation=False):
        # R-AMP: GPUs before Ampere (V100, T4) have no bf16; fp16 instead, with the loss
        # scaling the Trainer adds for it.
        warnings.warn("this GPU has no bf16: training in fp16 with loss scaling", stacklevel=2)
        training.update(bf16=False, fp16=True)
        if model_cfg["dtype"] == "bfloat16":
            model_cfg["dtype"] = "float16"
    # `training` is DPOConfig (TrainingArguments plus DPO options, beta among them) as-is: the
    # trainer does device placement, DDP/FSDP, mixed precision, gradient accumulation,
    # checkpoint rotation and logging (R-USE-LIBRARY).
    training_args = DPOConfig(**training)
    set_seed(training_args.seed)  # R-SEED

    dataset = load_data(data_cfg)
    tokenizer = AutoTokenizer.from_pretrained(
        model_cfg["name"], trust_remote_code=model_cfg["trust_remote_code"]
    )
    if tokenizer.pad_token is None:  # R-PAD-TOKEN: many chat models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None and not isinstance(dataset["train"][0]["prompt"], str):
        raise SystemExit(f"{model_cfg['name']} has no chat template: use an instruct model")
    model = AutoModelForCausalLM.from_pretrained(
        model_cfg["name"],
        dtype=model_cfg["dtype"],
        attn_implementation=model_cfg["attn_implementation"],
        trust_remote_code=model_cfg["trust_remote_code"],  # R-SAFE-LOAD
    )

    # The trainer applies the chat template and tokenizes once up front (R-PREPROCESS-ONCE); with
    # ref_model=None it builds the frozen reference itself: a copy of the starting model.
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        processing_class=tokenizer,
        # R-OVERFIT-WATCH: stop when the validation loss stops improving.
        callbacks=[EarlyStoppingCallback(cfg["early_stopping"]["patience"]), SaveAndStopOnSignal()],
    )
    if model_cfg["compile_layers"]:
        compile_layers(trainer.model)
        if trainer.ref_model is not None:  # None when the reference's log-probs are precomputed
            compile_layers(trainer.ref_model)  # the same layers, run without gradients
    check_reference_frozen(trainer)
    return trainer


def main() -> None:
    cfg, args = load_config()
    stop_with_the_launcher()
    trainer = build_trainer(cfg)
    state = PartialState()  # the trainer's process group; state.print prints on rank 0 only
    state.print(f"device: {trainer.args.device}, {trainer.args.world_size} processes")

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    share = 100 * trainable / total
    state.print(f"parameters: {trainable:,} trainable of {total:,} ({share:.2f}%)")
    if trainable == 0:  # R-TRAINABLE
        raise SystemExit("the model has no trainable parameters")
    reference = check_reference_frozen(trainer)  # R-REF-FROZEN
    # Logged: rewards/{chosen,rejected} = beta * log(policy / reference) of each answer (the
    # implicit KL to the reference), rewards/margins and rewards/accuracies.
    state.print(f"reference: {reference}; beta: {trainer.args.beta}")

    trainer.train(resume_from_checkpoint=checkpoint_to_resume(args.resume, trainer.args))

    # With load_best_model_at_end the model is now the best checkpoint's.
    trainer.save_model(Path(trainer.args.output_dir) / "final")
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    run(main)
