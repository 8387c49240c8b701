# [003] "Not updating learning rate"
def train(model, get_batch, optimizer, get_lr, max_iters):
    for it in range(max_iters):
        lr = get_lr(it)  # expect: R-LR-SCHEDULE
        x, y = get_batch("train")
        optimizer.zero_grad()
        model(x, y).backward()
        optimizer.step()
        print(f"iter {it}: lr {lr:.2e}")
