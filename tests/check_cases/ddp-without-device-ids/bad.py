# [000] §9 "Missing DDP initialization"
import os

import torch
import torch.distributed as dist
import torch.nn as nn


def wrap(model):
    dist.init_process_group(backend="nccl")
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    model = model.to(local_rank)
    return nn.parallel.DistributedDataParallel(model)  # expect: R-DDP-INIT
