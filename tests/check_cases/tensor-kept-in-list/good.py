def train(model, dataloader, optimizer):
    losses = []
    for batch in dataloader:
        optimizer.zero_grad()
        loss = model(batch)
        losses.append(loss.detach().cpu().item())
        loss.backward()
        optimizer.step()
    return losses
