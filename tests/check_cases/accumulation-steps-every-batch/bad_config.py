def train(model, loader, opt, cfg):
    opt.zero_grad()
    for batch in loader:
        loss = model(**batch).loss
        loss = loss / cfg["grad_accum_steps"]
        loss.backward()
        opt.step()  # expect: R-GRAD-ACCUM
        opt.zero_grad()
