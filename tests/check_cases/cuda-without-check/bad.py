# [000] §3 "Missing device check"
def prepare(model, batch):
    model = model.to("cuda")  # expect: R-DEVICE
    return model, {k: v.to("cuda") for k, v in batch.items()}
