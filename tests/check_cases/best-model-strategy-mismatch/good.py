from transformers import TrainingArguments

args = TrainingArguments(
    output_dir="out",
    eval_strategy="steps",
    save_strategy="steps",
    eval_steps=250,
    save_steps=500,
    load_best_model_at_end=True,
    metric_for_best_model="f1",
)
