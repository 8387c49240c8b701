import torch
from torch.utils.data import DataLoader


def loader(dataset):
    device = torch.device("cuda" if torch.cuda.is_available() else "mps")
    return DataLoader(dataset, pin_memory=device.type == "cuda")
