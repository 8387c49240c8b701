# [000] §8 "Not saving optimizer state"
import torch


def save_checkpoint(model, path):
    torch.save(model.state_dict(), path)  # expect: R-FULL-CHECKPOINT
