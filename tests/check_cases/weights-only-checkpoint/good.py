import torch


def save_checkpoint(model, optimizer, epoch, loss, path):
    torch.save(
        {
            "epoch": epoch,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "loss": loss,
        },
        path,
    )


def export(model):
    # The final weights for inference, not a checkpoint to resume from.
    torch.save(model.state_dict(), "model.pt")
