from transformers import TrainingArguments

args = TrainingArguments("out", no_cuda=True)  # expect: R-USE-LIBRARY
