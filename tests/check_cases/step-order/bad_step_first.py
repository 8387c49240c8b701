def train(model, loader, opt):
    for step, batch in enumerate(loader):
        opt.zero_grad(set_to_none=True)
        opt.step()  # expect: R-STEP-ORDER
        loss = model(batch).loss
        loss.backward()
