# [000] §4 "Wrong shuffle in distributed training"
import torch.distributed as dist
from torch.utils.data import DataLoader


def loaders(dataset):
    dist.init_process_group("gloo")
    train_loader = DataLoader(dataset, batch_size=32, shuffle=True)  # expect: R-DIST-SAMPLER
    return train_loader
