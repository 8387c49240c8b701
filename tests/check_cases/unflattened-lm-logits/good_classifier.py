# An RNN classifier: its output is [batch, classes], not a language model's.
import torch.nn.functional as F


def step(model, data, target):
    output = model(data)
    return F.nll_loss(output, target)
