import torch


class Runner:
    def fit(self, epochs):
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        for epoch in range(epochs):
            for x, y in self.loader:
                if x is None:
                    continue
                out = self.net(x)
                self.criterion(out, y).backward()
                self.opt.step()  # expect: R-STEP-ORDER
