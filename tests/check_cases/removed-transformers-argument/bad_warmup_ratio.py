import transformers

args = transformers.TrainingArguments("out", warmup_ratio=0.1)  # expect: R-USE-LIBRARY
