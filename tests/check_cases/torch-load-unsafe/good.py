import torch

state = torch.load("ckpt.pt", map_location="cpu", weights_only=True)
