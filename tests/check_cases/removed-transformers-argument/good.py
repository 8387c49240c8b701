from transformers import Trainer, TrainingArguments
from trl import SFTConfig


def build(model, data, tok):
    args = TrainingArguments("out", use_cpu=True, warmup_steps=0.1)
    sft = SFTConfig(output_dir="out", max_length=1024)
    return Trainer(model=model, args=args, train_dataset=data, processing_class=tok), sft
