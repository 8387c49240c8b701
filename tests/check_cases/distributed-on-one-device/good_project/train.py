import torch


def setup(model):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device)
