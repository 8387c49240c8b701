import torch
import torch.distributed as dist


def main(build):
    dist.init_process_group("nccl")
    torch.manual_seed(42)  # identical initial weights on every rank
    model = build()
    rank = dist.get_rank()
    torch.manual_seed(42 + rank)  # then each rank its own dropout
    return model
