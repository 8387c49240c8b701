from transformers import AutoTokenizer, DataCollatorWithPadding


def collator(name):
    tok = AutoTokenizer.from_pretrained(name)
    return DataCollatorWithPadding(tok)  # expect: R-PAD-TOKEN
