# Dividing a logged number by the accumulation steps is not scaling the loss.
def train(model, loader, optimizer, gradient_accumulation_steps, log):
    for batch in loader:
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        log(loss.item() / gradient_accumulation_steps)
