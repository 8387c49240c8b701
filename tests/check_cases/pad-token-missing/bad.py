# [000] §10 "Wrong tokenizer padding"
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("gpt2")
inputs = tokenizer(["a", "b c"], padding=True)  # expect: R-PAD-TOKEN
