def train(model, loader, optimizer):
    for batch in loader:
        loss = model(batch)
        loss.backward()
        optimizer.zero_grad()  # expect: R-STEP-ORDER
        optimizer.step()
