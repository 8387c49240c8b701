# A loss built from terms in an inner loop, then backpropagated (neural style transfer).
from torch.nn.functional import mse_loss


def step(features_y, grams, optimizer, content_loss, weight):
    style_loss = 0.0
    for ft_y, gm_s in zip(features_y, grams, strict=True):
        style_loss += mse_loss(ft_y, gm_s)
    total_loss = content_loss + weight * style_loss
    optimizer.zero_grad()
    total_loss.backward()
    optimizer.step()
