from transformers import TrainingArguments


def arguments(training: dict) -> TrainingArguments:
    # eval/save strategies come from the YAML config, checked there.
    return TrainingArguments(**training, load_best_model_at_end=True)
