from torch.cuda.amp import GradScaler, autocast  # expect: R-AMP

scaler = GradScaler()
context = autocast
