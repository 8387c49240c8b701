# [000] §1 "Missing gradient zeroing"
def train(model, dataloader, optimizer):
    for batch in dataloader:
        loss = model(batch)
        loss.backward()
        optimizer.step()  # expect: R-STEP-ORDER
