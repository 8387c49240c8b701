# [000] §0.1 "Using DDP for single GPU", in a project rendered with hardware: cuda
import torch
import torch.distributed as dist  # expect: R-DDP-ONLY-MULTI
from torch.nn.parallel import DistributedDataParallel as DDP


def setup(model):
    dist.init_process_group("nccl")  # expect: R-DDP-ONLY-MULTI
    return DDP(model, device_ids=[torch.cuda.current_device()])  # expect: R-DDP-ONLY-MULTI
