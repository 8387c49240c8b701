def train(model, loader, optim, lr_scheduler):
    for batch in loader:
        optim.zero_grad()
        lr_scheduler.step()  # expect: R-STEP-ORDER
        model(batch).loss.backward()
        optim.step()
