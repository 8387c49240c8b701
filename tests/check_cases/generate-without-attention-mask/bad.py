import torch


def complete(model, tokenizer, prompts):
    tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model.generate(batch["input_ids"], max_new_tokens=32)  # expect: R-PAD-TOKEN
