# Gradients zeroed by a helper (set_to_none via the model), at the end of the step.
def reset(model):
    model.zero_grad(set_to_none=True)


def train(model, loader, optimizer, scaler):
    for batch in loader:
        loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        reset(model)
