import copy

import torch


def train(policy, loader, optimizer, dpo_loss):
    ref_model = copy.deepcopy(policy)
    ref_model.requires_grad_(False)
    ref_model.eval()
    for batch in loader:
        optimizer.zero_grad()
        with torch.no_grad():
            ref_logps = ref_model(**batch).logits
        loss = dpo_loss(policy(**batch).logits, ref_logps)
        loss.backward()
        optimizer.step()
