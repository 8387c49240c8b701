# torch.distributed.checkpoint saves and loads on one device too: not process-group code.
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict


def save(model, optimizer, step, path):
    dcp.save({"model": get_model_state_dict(model), "optimizer": optimizer.state_dict(), "step": step}, checkpoint_id=path)
