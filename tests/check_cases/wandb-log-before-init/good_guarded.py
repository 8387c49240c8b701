# A callback in a Trainer project: the Trainer starts the run; the log checks it exists.
import wandb
from transformers import Trainer, TrainerCallback


class Completions(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if wandb.run is not None:
            wandb.log({"step": state.global_step})


def build(model, args):
    return Trainer(model=model, args=args, callbacks=[Completions()])
