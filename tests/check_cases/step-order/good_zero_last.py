# zero_grad at the end of each step is the same cycle.
def train(model, loader, optimizer, accumulation_steps):
    for i, batch in enumerate(loader):
        loss = model(batch) / accumulation_steps
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
