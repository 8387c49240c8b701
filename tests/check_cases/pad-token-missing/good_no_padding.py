from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("gpt2")
ids = [tokenizer(text, padding=False)["input_ids"] for text in ["a", "b c"]]
