# [000] §7 "Missing wandb initialization"
import wandb


def train(epochs, run_epoch):
    for epoch in range(epochs):
        loss = run_epoch(epoch)
        wandb.log({"loss": loss})  # expect: R-LOG-AFTER-STEP
