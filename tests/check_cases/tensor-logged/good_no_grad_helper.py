# nanoGPT: estimate_loss runs without gradients, so what it returns holds no graph.
import torch
import wandb


@torch.no_grad()
def estimate_loss(model, get_batch):
    model.eval()
    losses = {split: model(*get_batch(split))[1].mean() for split in ("train", "val")}
    model.train()
    return losses


def train(model, get_batch, optimizer, iters):
    wandb.init(project="owt")
    for it in range(iters):
        losses = estimate_loss(model, get_batch)
        wandb.log({"iter": it, "train/loss": losses["train"], "val/loss": losses["val"]})
        optimizer.zero_grad()
        model(*get_batch("train"))[1].backward()
        optimizer.step()
