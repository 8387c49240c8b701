"""Supervised fine-tuning of a chat model with TRL's `SFTTrainer`.

    python train.py --config configs/train.yaml [--section.key value ...] [--resume [CHECKPOINT]]
    torchrun --nproc_per_node 8 train.py --config configs/train.yaml   # or launch/torchrun.sh

Data: JSON lines with a `prompt` and a `completion`, either chat messages (the model's chat
template formats them) or plain strings, e.g. data/train.jsonl. Only the completion is in the
loss: prompt tokens get the label -100 (R-LOSS-MASK).
Scale small: full fine-tuning of every weight.
"""

import warnings
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, set_seed
from transformers.modeling_layers import GradientCheckpointingLayer
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from config import load_config, run
from interruptions import SaveAndStopOnSignal, checkpoint_to_resume, stop_with_the_launcher
from jsonl import as_dataset, read_jsonl, same_form

SCHEMA = (
    'one JSON object per line: {"prompt": [{"role": "user", "content": "..."}], '
    '"completion": [{"role": "assistant", "content": "..."}]}, or both as non-empty strings'
)
IGNORE_INDEX = -100  # the label of tokens left out of the loss


def _problem(value: object, field: str) -> str | None:
    """Why `value` is not a valid prompt or completion, or None when it is."""
    if isinstance(value, str):
        return None if value.strip() else f"empty {field}"
    if not isinstance(value, list) or not value:
        return f"{field} must be a non-empty string or list of messages"
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"{field} messages need a role and a content"
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return f"{field} has a message with empty content"
    if field == "completion" and value[-1]["role"] != "assistant":
        return "the completion must end with an assistant message"
    return None


def load_data(data_cfg: dict) -> DatasetDict:
    """Load the train/validation JSONL files and check them (R-DATA-VALIDATION)."""
    dataset = DatasetDict()
    for split in ("train", "validation"):
        path = data_cfg[f"{split}_file"]
        rows = read_jsonl(path, ("prompt", "completion"), SCHEMA)
        for line, row in rows:
            prompt, completion = row["prompt"], row["completion"]
            problem = _problem(prompt, "prompt") or _problem(completion, "completion")
            if not problem and isinstance(prompt, str) != isinstance(completion, str):
                problem = "prompt and completion must both be strings or both be messages"
            if problem:
                raise SystemExit(f"{path}, line {line}: {problem}\nExpected {SCHEMA}")
        same_form(rows, _form, "the form (string or messages)", path, SCHEMA)
        dataset[split] = as_dataset(rows)
    return dataset


def _form(row: dict) -> str:
    return "string" if isinstance(row["prompt"], str) else "messages"


def check_loss_mask(dataset: Dataset, examples: int, path: str) -> None:
    """R-LOSS-MASK: every example keeps tokens in the loss, and its prompt is masked out.

    `dataset` is the trainer's tokenized copy of the `examples` lines in `path`. TRL drops an
    example whose labels are all -100 (its prompt fills max_length); here that is an error.
    """
    if len(dataset) < examples:
        raise SystemExit(
            f"{path}: {examples - len(dataset)} of {examples} examples have no token in the loss: "
            "their prompt fills all of training.max_length. Raise it or shorten those prompts."
        )
    unmasked = [i for i, labels in enumerate(dataset["labels"], 1) if IGNORE_INDEX not in labels]
    if unmasked:
        warnings.warn(
            f"{path}: {len(unmasked)} examples have no masked token (rows {unmasked[:5]}): "
            "the prompt is in the loss. Is training.completion_only_loss off?",
            stacklevel=2,
        )


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


def build_trainer(cfg: dict) -> SFTTrainer:
    """The trainer, with its data tokenized and loss-masked, ready to train."""
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
        if model_cfg["attn_implementation"] == "flex_attention":  # it has no backward on the CPU
            model_cfg["attn_implementation"] = "sdpa"
        model_cfg["compile_layers"] = False  # inductor's CPU kernels need a C++ compiler
    elif training["bf16"] and not torch.cuda.is_bf16_supported(including_emulation=False):
        # R-AMP: GPUs before Ampere (V100, T4) have no bf16; fp16 instead, with the loss
        # scaling the Trainer adds for it.
        warnings.warn("this GPU has no bf16: training in fp16 with loss scaling", stacklevel=2)
        training.update(bf16=False, fp16=True)
        if model_cfg["dtype"] == "bfloat16":
            model_cfg["dtype"] = "float16"
    if model_cfg["attn_implementation"] == "flex_attention":
        # flex_attention compiles its kernels on first use, and padding-free batches change length
        # every step. Compiled for the first batch's exact length, they were still building after
        # 3 to 8 minutes for 32 examples on an H100 (and are built again for the next length);
        # compiled for any length, they are built once, in under a minute (benchmarks/README.md).
        torch._dynamo.config.assume_static_by_default = False
    # `training` is SFTConfig (TrainingArguments plus SFT options) as-is: the trainer does device
    # placement, DDP/FSDP, mixed precision, gradient accumulation, checkpoint rotation and
    # logging (R-USE-LIBRARY).
    training_args = SFTConfig(**training)
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
    if model_cfg["compile_layers"]:
        compile_layers(model)

    # data.padding_free: a batch's examples are concatenated into one row, with no padding, and
    # position_ids restarting at 0 for each; attention (SDPA builds a block-diagonal mask from
    # them, flash attention takes the boundaries) keeps every example to itself. SFTConfig's
    # own padding_free refuses a max_length without packing, hence TRL's collator here; with
    # training.packing the trainer makes that collator itself.
    collator = None
    if data_cfg["padding_free"] and not training_args.packing:
        collator = DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=True)

    # The trainer applies the chat template, tokenizes once up front (R-PREPROCESS-ONCE) and
    # labels prompt tokens -100 (completion_only_loss).
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        processing_class=tokenizer,
        # R-OVERFIT-WATCH: stop when the validation loss stops improving.
        callbacks=[EarlyStoppingCallback(cfg["early_stopping"]["patience"]), SaveAndStopOnSignal()],
    )
    if not training_args.packing:  # packing merges examples into blocks
        prepared = {"train": trainer.train_dataset, "validation": trainer.eval_dataset}
        for split, data in prepared.items():
            check_loss_mask(data, len(dataset[split]), data_cfg[f"{split}_file"])
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

    trainer.train(resume_from_checkpoint=checkpoint_to_resume(args.resume, trainer.args))

    # With load_best_model_at_end the model is now the best checkpoint's.
    trainer.save_model(Path(trainer.args.output_dir) / "final")
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    run(main)
