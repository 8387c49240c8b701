from torch.utils.data import DataLoader


def loader(dataset):
    return DataLoader(dataset, batch_size=8, pin_memory=False)
