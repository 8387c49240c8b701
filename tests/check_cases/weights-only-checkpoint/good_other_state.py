# The scheduler's state alone is not a model checkpoint missing its optimizer.
import torch


def save_scheduler(lr_scheduler, output_dir):
    torch.save(lr_scheduler.state_dict(), f"{output_dir}/checkpoint/scheduler.pt")
