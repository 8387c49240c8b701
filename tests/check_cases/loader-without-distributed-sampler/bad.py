import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader


def build(model, train_set, local_rank):
    dist.init_process_group("nccl")
    model = DistributedDataParallel(model, device_ids=[local_rank])
    loader = DataLoader(train_set, batch_size=8)  # expect: R-DIST-SAMPLER
    return model, loader
