import numpy as np

tokens = np.memmap("data/train.bin", mode="r")  # expect: R-MEMMAP-DTYPE
