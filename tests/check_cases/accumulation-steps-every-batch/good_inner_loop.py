def train(model, batches, optimizer, accum, max_steps):
    for step in range(max_steps):
        optimizer.zero_grad(set_to_none=True)
        for micro_step in range(accum):
            x, y = next(batches)
            loss = model(x, y) / accum
            loss.backward()
        optimizer.step()
