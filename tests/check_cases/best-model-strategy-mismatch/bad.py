from transformers import TrainingArguments

args = TrainingArguments(  # expect: R-EVAL-STRATEGY
    output_dir="out",
    eval_strategy="epoch",
    save_strategy="steps",
    load_best_model_at_end=True,
    metric_for_best_model="f1",
)
