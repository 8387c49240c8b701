# Distributed autograd: each context holds its own gradients; nothing to zero.
import torch.distributed.autograd as dist_autograd


def train(model, batches, opt, criterion):
    for inputs, target in batches:
        with dist_autograd.context() as context_id:
            loss = criterion(model(inputs), target)
            dist_autograd.backward(context_id, [loss])
            opt.step(context_id)
