# [000] §9 "using DDP patterns without setup"
import torch.nn as nn


def wrap(model):
    return nn.parallel.DistributedDataParallel(model)  # expect: R-DDP-INIT
