import wandb


def train(model, loader, optimizer, step, log_interval):
    wandb.init(project="demo")
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        step += 1
        if step % log_interval == 0:  # one .item() per logging interval, not per step
            wandb.log({"loss": loss.item(), "step": step})
