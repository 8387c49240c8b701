def train(model, loader, optimizer):
    total_loss = 0.0
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        total_loss += loss  # expect: R-ITEM-LOGGING
    return total_loss / len(loader)
