# [000] §9 "Not using rank-specific seeds"
import torch
import torch.distributed as dist


def main(build):
    dist.init_process_group("nccl")
    torch.manual_seed(42)  # expect: R-RANK-SEED
    return build()
