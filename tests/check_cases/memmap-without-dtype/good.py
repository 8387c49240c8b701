import json

import numpy as np

meta = json.load(open("data/meta.json"))
tokens = np.memmap("data/train.bin", dtype=meta["dtype"], mode="r")
