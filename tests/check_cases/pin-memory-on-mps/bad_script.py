# [004] MPS: "'pin_memory' argument is set as true but not supported on MPS"
import torch
from transformers import TrainingArguments

device = torch.device("mps")
args = TrainingArguments("out", dataloader_pin_memory=True)  # expect: R-PIN-MEMORY
