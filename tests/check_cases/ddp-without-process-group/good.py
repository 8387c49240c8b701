import torch.distributed as dist
import torch.nn as nn


def wrap(model):
    dist.init_process_group(backend="gloo")
    return nn.parallel.DistributedDataParallel(model)
