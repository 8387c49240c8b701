# [000] §1 "Missing model.train() / model.eval()"
def train(model, train_loader, optimizer):
    model.eval()
    for batch in train_loader:
        optimizer.zero_grad()
        loss = model(batch)
        loss.backward()  # expect: R-TRAIN-EVAL-MODE
        optimizer.step()
