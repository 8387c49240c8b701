from transformers import Trainer


def build(model, args, data, tok):
    return Trainer(
        model=model,
        args=args,
        train_dataset=data,
        tokenizer=tok,  # expect: R-USE-LIBRARY
    )
