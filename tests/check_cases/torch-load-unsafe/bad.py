import torch

state = torch.load("ckpt.pt", map_location="cpu")  # expect: R-SAFE-LOAD
