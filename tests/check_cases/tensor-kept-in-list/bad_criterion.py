def train(net, loader, opt, criterion):
    history = {"train": []}
    for x, y in loader:
        opt.zero_grad()
        batch_loss = criterion(net(x), y)
        batch_loss.backward()
        opt.step()
        history["train"].append(batch_loss * x.size(0))  # expect: R-ITEM-LOGGING
