import torch


def prepare(net, x):
    x = x.cuda()  # expect: R-DEVICE
    return net.to(torch.device("cuda:0"))(x)
