import torch


@torch.no_grad()
def complete(policy, input_ids):
    return policy.generate(input_ids=input_ids, do_sample=False)  # expect: R-PAD-TOKEN
