def train(model, loader, optimizer, scheduler):
    for batch in loader:
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()
        scheduler.step()
