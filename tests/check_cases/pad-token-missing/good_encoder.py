# BERT-family tokenizers always have a pad token.
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("bert-base-cased")
batch = tokenizer(["a", "b c"], padding="longest", return_tensors="pt")
