def train(model, loader, optimizer, aux_weight):
    total_loss = 0.0
    for batch in loader:
        optimizer.zero_grad()
        out = model(**batch)
        loss = out.loss
        loss += aux_weight * out.aux_loss
        loss.backward()
        optimizer.step()
        total_loss += loss.detach()
    return total_loss.item() / len(loader)
