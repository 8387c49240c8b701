# [000] §5 "Accumulating tensors without detach"
def train(model, dataloader, optimizer):
    losses = []
    for batch in dataloader:
        optimizer.zero_grad()
        loss = model(batch)
        losses.append(loss)  # expect: R-ITEM-LOGGING
        loss.backward()
        optimizer.step()
    return losses
