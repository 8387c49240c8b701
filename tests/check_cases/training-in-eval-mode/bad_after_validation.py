import torch


def validate(net, loader):
    net.eval()
    with torch.no_grad():
        return sum(net(x).item() for x in loader)


def fit(net, loader, val_loader, optimizer, steps):
    net.train()
    for step in range(steps):
        for x in loader:
            optimizer.zero_grad()
            net(x).backward()
            optimizer.step()
        validate(net, val_loader)  # expect: R-TRAIN-EVAL-MODE
