# [004] "torch.cuda.amp.GradScaler(...) is deprecated"
import torch


def step(model, batch, optimizer):
    scaler = torch.cuda.amp.GradScaler()  # expect: R-AMP
    with torch.cuda.amp.autocast():  # expect: R-AMP
        loss = model(batch)
    scaler.scale(loss).backward()
