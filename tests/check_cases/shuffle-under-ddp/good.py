import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def loaders(dataset, epochs):
    dist.init_process_group("gloo")
    sampler = DistributedSampler(dataset)
    train_loader = DataLoader(dataset, batch_size=32, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        yield from train_loader
