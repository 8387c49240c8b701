import torch


def validate(model, val_loader):
    val_loss = 0.0
    model.eval()
    with torch.no_grad():
        for batch in val_loader:
            val_loss += model(batch).item()
    return val_loss
