import wandb


def train(epochs, run_epoch, lr, batch_size):
    wandb.init(project="my-project", config={"learning_rate": lr, "batch_size": batch_size})
    for epoch in range(epochs):
        loss = run_epoch(epoch)
        wandb.log({"loss": loss})
