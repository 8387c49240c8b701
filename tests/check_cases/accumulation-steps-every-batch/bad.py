# [000] §1 "Gradient accumulation errors"
def train(model, dataloader, optimizer, accumulation_steps):
    for i, batch in enumerate(dataloader):
        loss = model(batch) / accumulation_steps
        loss.backward()
        optimizer.step()  # expect: R-GRAD-ACCUM
        optimizer.zero_grad()
