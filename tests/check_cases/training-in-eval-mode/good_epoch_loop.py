import torch


def fit(model, train_loader, eval_loader, optimizer, epochs):
    for epoch in range(epochs):
        model.train()
        for batch in train_loader:
            optimizer.zero_grad()
            model(**batch).loss.backward()
            optimizer.step()
        model.eval()
        for batch in eval_loader:
            with torch.no_grad():
                model(**batch)
