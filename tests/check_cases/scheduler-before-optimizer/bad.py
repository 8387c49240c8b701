# [000] §6 "Wrong scheduler step timing"
def train(model, dataloader, optimizer, scheduler, epochs):
    for epoch in range(epochs):
        scheduler.step()  # expect: R-STEP-ORDER
        for batch in dataloader:
            optimizer.zero_grad()
            model(batch).backward()
            optimizer.step()
