from torch.utils.data import DataLoader, DistributedSampler


def train(dataset, epochs, step):
    loader = DataLoader(dataset, sampler=DistributedSampler(dataset), batch_size=4)
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            step(batch)
