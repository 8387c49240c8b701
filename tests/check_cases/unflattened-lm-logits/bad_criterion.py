import torch.nn as nn
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained("org/model")
criterion = nn.CrossEntropyLoss()


def loss_of(batch):
    out = model(**batch)
    return criterion(out.logits, batch["labels"])  # expect: R-LOSS-SHAPE
