# [003] "targets are already shifted. inputs[i] predicts targets[i]. Don't shift again."
import torch.nn.functional as F


def train_step(model, get_batch, vocab_size):
    x, y = get_batch("train")
    logits = model(x)[:, :-1, :]
    targets = y[:, 1:]  # expect: R-LOSS-SHAPE
    return F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
