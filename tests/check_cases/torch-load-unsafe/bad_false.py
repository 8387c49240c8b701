import torch


def resume(path):
    return torch.load(path, weights_only=False)  # expect: R-SAFE-LOAD
