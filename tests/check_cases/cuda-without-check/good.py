import torch


def prepare(model, batch):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}")
    model = model.to(device)
    return model, {k: v.to(device) for k, v in batch.items()}
