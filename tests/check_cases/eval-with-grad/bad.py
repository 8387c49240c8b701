# [000] §5 "Not detaching in validation"
def validate(model, val_loader):
    val_loss = 0.0
    model.eval()
    for batch in val_loader:  # expect: R-NO-GRAD-EVAL
        val_loss += model(batch).item()
    return val_loss
