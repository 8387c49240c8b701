from trl import DPOConfig, GRPOConfig


def configs(cfg):
    dpo = DPOConfig(output_dir="out", beta=0.1)
    grpo = GRPOConfig(output_dir="out", num_generations=4, beta=0.04)
    from_yaml = GRPOConfig(**cfg)  # beta comes from the config
    return dpo, grpo, from_yaml
