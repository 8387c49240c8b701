import torch


def train(model, loader, optimizer, every):
    for step, batch in enumerate(loader):
        optimizer.zero_grad()
        model(batch).backward()
        optimizer.step()
        if step % every == 0:
            state = {"model": model.state_dict()}
            torch.save(state, f"runs/step_{step}.pt")  # expect: R-FULL-CHECKPOINT
