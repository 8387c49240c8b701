# The model name is a parameter whose default is an encoder with a pad token.
from transformers import AutoTokenizer


def get_dataloaders(texts, model_name: str = "bert-base-cased"):
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    return tokenizer(texts, padding="max_length", max_length=128)
