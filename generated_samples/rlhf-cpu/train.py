"""RLHF in two stages: train a reward model on preference pairs (TRL `RewardTrainer`), then
optimise the policy online against it with GRPO (TRL `GRPOTrainer`) and a KL penalty.

    python train.py --config configs/train.yaml [--stage reward|policy|all] [--section.key value]
    python train.py --config configs/train.yaml --resume [CHECKPOINT]

`stage: all` (the default) runs both stages in order. `--resume` picks up the stage that
was interrupted: with the reward model already saved, it goes on with the policy stage.

Data: data/preferences.jsonl ({"prompt", "chosen", "rejected"}) for the reward model,
data/prompts.jsonl ({"prompt"}) for the policy; prompts are sent through the chat template.
Scale small: full fine-tuning of every weight; the reference policy is a frozen copy.
"""

from pathlib import Path

from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainingArguments,
    set_seed,
)
from trl import GRPOConfig, GRPOTrainer, RewardConfig, RewardTrainer

from config import load_config, run
from interruptions import SaveAndStopOnSignal, checkpoint_to_resume
from jsonl import as_dataset, read_jsonl
from rewards import length_penalty, repetition_penalty

STAGES = ("reward", "policy")
PREFERENCE_SCHEMA = (
    'one JSON object per line: {"prompt": "<question>", "chosen": "<better answer>", '
    '"rejected": "<worse answer>"} (non-empty strings)'
)
PROMPT_SCHEMA = 'one JSON object per line: {"prompt": "<non-empty string>"}'


def load_jsonl(path: str, columns: tuple[str, ...], schema: str) -> Dataset:
    """Read a JSONL file and check every row against `schema` (R-DATA-VALIDATION)."""
    rows = read_jsonl(path, columns, schema)
    for line, row in rows:
        empty = [c for c in columns if not isinstance(row[c], str) or not row[c].strip()]
        if empty:
            raise SystemExit(f"{path}, line {line}: empty or non-string {empty}\nExpected {schema}")
    return as_dataset(rows)


def as_chat(row: dict) -> dict:
    """Plain strings to chat messages, so both stages see the model's chat template."""
    chat = {"prompt": [{"role": "user", "content": row["prompt"]}]}
    for answer in ("chosen", "rejected"):
        if answer in row:
            chat[answer] = [{"role": "assistant", "content": row[answer]}]
    return chat


def load_tokenizer(name: str, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # R-PAD-TOKEN: many chat models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def report_parameters(model: PreTrainedModel, what: str) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    share = 100 * trainable / total
    print(f"{what} parameters: {trainable:,} trainable of {total:,} ({share:.2f}%)")
    if trainable == 0:  # R-TRAINABLE
        raise SystemExit(f"the {what} has no trainable parameters")


def freeze(model: PreTrainedModel) -> PreTrainedModel:
    """R-REF-FROZEN: no gradients, eval mode (no dropout)."""
    model.requires_grad_(False)
    return model.eval()


def stage_checkpoint(args: TrainingArguments, resume: str | None) -> str | None:
    """The complete checkpoint of this stage that `--resume` points at, if any."""
    if resume is None:
        return None
    if resume != "latest":
        inside = Path(resume).resolve().parent == Path(args.output_dir).resolve()
        return checkpoint_to_resume(resume, args) if inside else None
    if not any(Path(args.output_dir).glob("checkpoint-*")):
        print(f"no checkpoint in {args.output_dir}: this stage starts from the beginning")
        return None
    return checkpoint_to_resume(resume, args)


def reward_model_saved(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def train_reward_model(cfg: dict, args: RewardConfig, resume: str | None) -> None:
    """Stage 1: a sequence classifier with one output, trained so chosen > rejected."""
    rm_cfg, data_cfg = cfg["reward_model"], cfg["data"]
    set_seed(args.seed)  # R-SEED: before the reward head is initialised
    columns = ("prompt", "chosen", "rejected")
    train = load_jsonl(data_cfg["preference_file"], columns, PREFERENCE_SCHEMA)
    validation = load_jsonl(data_cfg["preference_validation_file"], columns, PREFERENCE_SCHEMA)

    tokenizer = load_tokenizer(rm_cfg["name"], rm_cfg["trust_remote_code"])
    model = AutoModelForSequenceClassification.from_pretrained(
        rm_cfg["name"],
        num_labels=1,  # one scalar score per sequence
        dtype=rm_cfg["dtype"],
        trust_remote_code=rm_cfg["trust_remote_code"],  # R-SAFE-LOAD
    )
    # The score is read at the last non-pad token.
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train.map(as_chat),
        eval_dataset=validation.map(as_chat),
        processing_class=tokenizer,
        callbacks=[SaveAndStopOnSignal()],  # R-SAFE-INTERRUPT
    )
    for dataset, path in (
        (trainer.train_dataset, data_cfg["preference_file"]),
        (trainer.eval_dataset, data_cfg["preference_validation_file"]),
    ):
        if len(dataset) == 0:  # RewardTrainer drops pairs longer than max_length
            raise SystemExit(
                f"{path}: every pair is longer than reward_training.max_length "
                f"({args.max_length} tokens of prompt + answer): raise it or shorten the pairs"
            )
    report_parameters(trainer.model, "reward model")
    trainer.train(resume_from_checkpoint=stage_checkpoint(args, resume))
    # With load_best_model_at_end this is the checkpoint with the best validation accuracy.
    trainer.save_model(rm_cfg["save_dir"])
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


def load_reward_model(cfg: dict) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The reward model stage 1 saved: a separate, frozen model (R-REWARD-GUARD)."""
    rm_cfg = cfg["reward_model"]
    path = rm_cfg["save_dir"]
    if not reward_model_saved(path):
        raise SystemExit(f"no reward model in {path}: run the reward stage first (--stage reward)")
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=1,
        dtype=rm_cfg["dtype"],
        trust_remote_code=rm_cfg["trust_remote_code"],
    )
    print(f"reward model: {path}")
    return freeze(model), load_tokenizer(path, rm_cfg["trust_remote_code"])


def reward_weights(cfg: dict) -> list[float]:
    """The reward model's weight, then those of the rule-based terms that are on."""
    weights = cfg["rewards"]
    rules = [weights[name] for name in ("length", "repetition") if weights[name] > 0]
    return [weights["reward_model"], *rules]


def reward_functions(cfg: dict) -> tuple[list, list]:
    """The reward model, plus the rule-based terms with a weight above 0 ([001] Pitfall 7)."""
    weights = cfg["rewards"]
    reward_model, reward_tokenizer = load_reward_model(cfg)
    funcs, tokenizers = [reward_model], [reward_tokenizer]
    if weights["length"] > 0:
        funcs.append(length_penalty(weights["length_min_words"], weights["length_max_words"]))
        tokenizers.append(None)
    if weights["repetition"] > 0:
        funcs.append(repetition_penalty(weights["repetition_min_unique_ratio"]))
        tokenizers.append(None)
    return funcs, tokenizers


def train_policy(cfg: dict, args: GRPOConfig, resume: str | None) -> None:
    """Stage 2: GRPO samples several answers per prompt, scores them with the reward model,
    and moves the policy toward the better ones while a KL penalty keeps it near the reference."""
    model_cfg, data_cfg = cfg["model"], cfg["data"]
    set_seed(args.seed)  # R-SEED
    reward_funcs, reward_tokenizers = reward_functions(cfg)
    prompts = load_jsonl(data_cfg["prompt_file"], ("prompt",), PROMPT_SCHEMA)

    tokenizer = load_tokenizer(model_cfg["name"], model_cfg["trust_remote_code"])
    tokenizer.padding_side = "left"  # R-PAD-TOKEN: prompts are padded on the left for generation
    model = AutoModelForCausalLM.from_pretrained(
        model_cfg["name"],
        dtype=model_cfg["dtype"],
        trust_remote_code=model_cfg["trust_remote_code"],  # R-SAFE-LOAD
    )
    trainer = GRPOTrainer(
        model=model,
        args=args,
        reward_funcs=reward_funcs,
        reward_processing_classes=reward_tokenizers,
        train_dataset=prompts.map(as_chat),
        processing_class=tokenizer,
        callbacks=[SaveAndStopOnSignal()],  # R-SAFE-INTERRUPT
    )
    freeze(trainer.ref_model)  # R-REF-FROZEN: the KL is measured against this fixed copy
    report_parameters(trainer.model, "policy")
    # Logged every logging_steps: reward (total and per term), kl, entropy, completion lengths.
    trainer.train(resume_from_checkpoint=stage_checkpoint(args, resume))
    trainer.save_model(Path(args.output_dir) / "final")


def main() -> None:
    cfg, args = load_config()
    stage = cfg["stage"]
    if stage not in (*STAGES, "all"):
        raise SystemExit(f"stage must be one of reward, policy, all; got {stage!r}")
    # The `*_training` sections are RewardConfig / GRPOConfig (TrainingArguments) as-is: the
    # trainers do device placement, mixed precision, gradient accumulation,
    # checkpoint rotation and logging (R-USE-LIBRARY).
    reward_args = RewardConfig(**cfg["reward_training"])
    policy_args = GRPOConfig(**cfg["policy_training"], reward_weights=reward_weights(cfg))
    if policy_args.beta <= 0:  # R-REWARD-GUARD: without a KL penalty the policy drifts off
        raise SystemExit("policy_training.beta must be > 0 (the KL penalty; 0.04-0.1 is usual)")
    print(f"device: {reward_args.device}")

    stages = STAGES if stage == "all" else (stage,)
    for name in stages:
        if name == "reward" and args.resume and "policy" in stages:
            if reward_model_saved(cfg["reward_model"]["save_dir"]):
                print("reward model already trained; resuming the policy stage")
                continue
        print(f"=== stage: {name}")
        if name == "reward":
            train_reward_model(cfg, reward_args, args.resume)
        else:
            train_policy(cfg, policy_args, args.resume)


if __name__ == "__main__":
    run(main)
