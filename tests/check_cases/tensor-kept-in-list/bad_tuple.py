# nanoGPT-style: the model returns (logits, loss)
def train(model, get_batch, optimizer, iters):
    history = []
    for it in range(iters):
        X, Y = get_batch("train")
        logits, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss)  # expect: R-ITEM-LOGGING
