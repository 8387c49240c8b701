def train(model, loader, optimizer, writer, criterion):
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        writer.add_scalar("train/loss", loss, step)  # expect: R-ITEM-LOGGING
