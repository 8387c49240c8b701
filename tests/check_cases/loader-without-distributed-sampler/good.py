import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler


def build(model, train_set, val_set, local_rank):
    dist.init_process_group("nccl")
    model = DistributedDataParallel(model, device_ids=[local_rank])
    sampler = DistributedSampler(train_set, shuffle=False)
    loader = DataLoader(train_set, batch_size=8, sampler=sampler)
    val_loader = DataLoader(val_set, batch_size=8)  # validation runs on rank 0 only
    return model, loader, val_loader
