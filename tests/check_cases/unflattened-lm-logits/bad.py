# [000] §2 "Batch dimension mismatch"; [003] "Forgetting to reshape for loss"
import torch.nn.functional as F


def step(model, input_ids, labels, vocab_size):
    logits = model(input_ids)  # Shape: [batch, seq_len, vocab]
    return F.cross_entropy(logits, labels)  # expect: R-LOSS-SHAPE
