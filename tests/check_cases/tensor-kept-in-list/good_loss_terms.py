# Loss terms collected in a list, then summed and backpropagated once (actor-critic).
import torch
import torch.nn.functional as F


def finish_episode(saved, returns, optimizer):
    policy_losses, value_losses = [], []
    for (log_prob, value), R in zip(saved, returns, strict=True):
        policy_losses.append(-log_prob * (R - value.item()))
        value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
    optimizer.zero_grad()
    loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
    loss.backward()
    optimizer.step()
