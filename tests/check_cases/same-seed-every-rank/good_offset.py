# nanoGPT: the offset is the rank, by way of another name.
import os

import torch
from torch.distributed import init_process_group

init_process_group(backend="nccl")
ddp_rank = int(os.environ["RANK"])
seed_offset = ddp_rank
torch.manual_seed(1337 + seed_offset)
