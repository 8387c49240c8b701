"""Fine-tune a sequence classifier with the transformers `Trainer`.

    python train.py --config configs/train.yaml [--section.key value ...] [--resume [CHECKPOINT]]

Data: JSON lines with a `text` and a `label` field, e.g. data/train.jsonl.
Scale small: full fine-tuning of every weight.
"""

# ruff: noqa: E402 (the environment must be set before torch is imported)
import os

# R-MPS: run ops MPS lacks on the CPU, and keep tokenizers from forking threads.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from config import load_config, run
from interruptions import SaveAndStopOnSignal, checkpoint_to_resume
from jsonl import as_dataset, read_jsonl, same_form

SCHEMA = 'one JSON object per line: {"text": "<non-empty string>", "label": "<class name or id>"}'


def load_data(data_cfg: dict) -> DatasetDict:
    """Load the train/validation JSONL files and check them (R-DATA-VALIDATION)."""
    dataset = DatasetDict()
    for split in ("train", "validation"):
        path = data_cfg[f"{split}_file"]
        rows = read_jsonl(path, ("text", "label"), SCHEMA)
        for line, row in rows:
            text, label = row["text"], row["label"]
            if not isinstance(text, str) or not text.strip():
                raise SystemExit(f"{path}, line {line}: empty text\nExpected {SCHEMA}")
            if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
                raise SystemExit(f"{path}, line {line}: label {label!r}\nExpected {SCHEMA}")
        # Arrow holds one type per column: class names or ids, not a mix.
        same_form(rows, lambda row: type(row["label"]).__name__, "the label's type", path, SCHEMA)
        dataset[split] = as_dataset(rows)
    return dataset


def label_maps(dataset: DatasetDict, data_cfg: dict) -> tuple[dict[int, str], dict[str, int]]:
    """Class names from the training data, sorted; validation adds none (R-LABELS)."""
    names = [str(label) for label in sorted(set(dataset["train"]["label"]))]
    if len(names) < 2:
        raise SystemExit(f"{data_cfg['train_file']}: need at least 2 labels, found {names}")
    unseen = {str(label) for label in dataset["validation"]["label"]} - set(names)
    if unseen:
        raise SystemExit(
            f"{data_cfg['validation_file']}: labels {sorted(unseen)} not in training data"
        )
    return dict(enumerate(names)), {name: i for i, name in enumerate(names)}


def compute_metrics(eval_pred) -> dict[str, float]:
    """R-METRICS: accuracy, and F1/precision/recall averaged over classes (macro)."""
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="macro", zero_division=0
    )
    return {
        "accuracy": accuracy_score(labels, predictions),
        "f1": f1,
        "precision": precision,
        "recall": recall,
    }


def main() -> None:
    cfg, args = load_config()
    model_cfg, data_cfg, training = cfg["model"], cfg["data"], cfg["training"]
    if not torch.backends.mps.is_available():  # R-DEVICE
        warnings.warn("Apple MPS is not available: training on the CPU (slow)", stacklevel=1)
        training["use_cpu"] = True
    # `training` is TrainingArguments as-is: the Trainer does device placement,
    # mixed precision, gradient accumulation, checkpoint rotation and logging (R-USE-LIBRARY).
    training_args = TrainingArguments(**training)
    print(f"device: {training_args.device}")
    set_seed(training_args.seed)  # R-SEED: before the classification head is initialised

    dataset = load_data(data_cfg)
    id2label, label2id = label_maps(dataset, data_cfg)
    print(f"labels: {id2label}")

    tokenizer = AutoTokenizer.from_pretrained(
        model_cfg["name"], trust_remote_code=model_cfg["trust_remote_code"]
    )
    if tokenizer.pad_token is None:  # R-PAD-TOKEN: decoder models often ship without one
        tokenizer.pad_token = tokenizer.eos_token

    def preprocess(batch: dict) -> dict:
        encoded = tokenizer(batch["text"], truncation=True, max_length=data_cfg["max_length"])
        encoded["labels"] = [label2id[str(label)] for label in batch["label"]]
        return encoded

    # R-PREPROCESS-ONCE: tokenize every split once, up front; batches are padded per batch.
    dataset = dataset.map(preprocess, batched=True, remove_columns=["text", "label"])

    model = AutoModelForSequenceClassification.from_pretrained(
        model_cfg["name"],
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        dtype=model_cfg["dtype"],
        attn_implementation=model_cfg["attn_implementation"],
        trust_remote_code=model_cfg["trust_remote_code"],  # R-SAFE-LOAD
        **model_cfg["config_overrides"],
    )
    model.config.pad_token_id = tokenizer.pad_token_id

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"parameters: {trainable:,} trainable of {total:,} ({trainable / total:.2%})")
    if trainable == 0:  # R-TRAINABLE
        raise SystemExit("the model has no trainable parameters")

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        # R-OVERFIT-WATCH: stop when the validation metric stops improving.
        callbacks=[EarlyStoppingCallback(cfg["early_stopping"]["patience"]), SaveAndStopOnSignal()],
    )
    trainer.train(resume_from_checkpoint=checkpoint_to_resume(args.resume, trainer.args))

    # With load_best_model_at_end the model is now the best checkpoint's.
    trainer.save_model(Path(training_args.output_dir) / "final")
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    run(main)
