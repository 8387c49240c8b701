import torch.nn.functional as F


def step(model, input_ids, labels, vocab_size):
    logits = model(input_ids)  # Shape: [batch, seq_len, vocab]
    return F.cross_entropy(logits.view(-1, vocab_size), labels.view(-1))
