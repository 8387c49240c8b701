from trl import DPOConfig

config = DPOConfig(  # expect: R-EVAL-STRATEGY
    "out",
    eval_strategy="steps",
    save_strategy="steps",
    eval_steps=300,
    save_steps=500,
    load_best_model_at_end=True,
)
