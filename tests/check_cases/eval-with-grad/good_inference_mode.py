import torch


class Evaluator:
    @torch.inference_mode()
    def run(self, batches):
        self.model.eval()
        scores = []
        for inputs, labels in batches:
            logits = self.model(**inputs).logits
            scores.append((logits.argmax(-1) == labels).float().mean().item())
        self.model.train()
        return scores
