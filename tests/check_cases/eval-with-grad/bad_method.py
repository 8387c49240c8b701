class Evaluator:
    def run(self, batches):
        self.model.eval()
        scores = []
        for inputs, labels in batches:  # expect: R-NO-GRAD-EVAL
            logits = self.model(**inputs).logits
            scores.append((logits.argmax(-1) == labels).float().mean().item())
        self.model.train()
        return scores
