def train(model, get_batch, optimizer, get_lr, max_iters):
    for it in range(max_iters):
        lr = get_lr(it)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        x, y = get_batch("train")
        optimizer.zero_grad()
        model(x, y).backward()
        optimizer.step()
