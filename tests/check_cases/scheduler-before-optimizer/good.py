def train(model, dataloader, optimizer, scheduler, epochs):
    for epoch in range(epochs):
        for batch in dataloader:
            optimizer.zero_grad()
            model(batch).backward()
            optimizer.step()
        scheduler.step()
