# [003] "Logging tensors directly"
import wandb


def train(model, loader, optimizer, step):
    wandb.init(project="demo")
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        step += 1
        wandb.log({"loss": loss, "step": step})  # expect: R-ITEM-LOGGING
