import torch


def fit(transformer, loader, optimizer, device, every):
    transformer.train()
    for batch_id, x in enumerate(loader):
        optimizer.zero_grad()
        transformer(x.to(device)).sum().backward()
        optimizer.step()
        if (batch_id + 1) % every == 0:
            transformer.eval().cpu()
            torch.save({"model": transformer.state_dict(), "optimizer": optimizer.state_dict()}, "ckpt.pt")
            transformer.to(device).train()
