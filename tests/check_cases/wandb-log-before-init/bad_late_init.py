import wandb


def main(cfg, metrics):
    wandb.log({"setup": 1})  # expect: R-LOG-AFTER-STEP
    wandb.init(project=cfg["project"], config=cfg)
    wandb.log(metrics)
