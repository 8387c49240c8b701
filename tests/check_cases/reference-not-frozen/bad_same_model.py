from trl import DPOTrainer


def build(policy, args, data, tok):
    return DPOTrainer(
        model=policy,
        ref_model=policy,  # expect: R-REF-FROZEN
        args=args,
        train_dataset=data,
        processing_class=tok,
    )
