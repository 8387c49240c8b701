from transformers import AutoModelForCausalLM


def load(cfg):
    return AutoModelForCausalLM.from_pretrained(
        cfg["name"], trust_remote_code=cfg["trust_remote_code"]
    )
