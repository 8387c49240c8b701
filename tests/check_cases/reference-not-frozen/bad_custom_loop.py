import copy


def train(policy, loader, optimizer, dpo_loss):
    ref_model = copy.deepcopy(policy)  # expect: R-REF-FROZEN
    for batch in loader:
        optimizer.zero_grad()
        ref_logps = ref_model(**batch).logits
        loss = dpo_loss(policy(**batch).logits, ref_logps)
        loss.backward()
        optimizer.step()
