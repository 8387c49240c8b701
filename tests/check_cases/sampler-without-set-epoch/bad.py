from torch.utils.data import DataLoader, DistributedSampler


def train(dataset, epochs, step):
    loader = DataLoader(dataset, sampler=DistributedSampler(dataset), batch_size=4)  # expect: R-DIST-SAMPLER
    for epoch in range(epochs):
        for batch in loader:
            step(batch)
