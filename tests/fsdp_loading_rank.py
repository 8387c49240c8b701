"""One rank of the FSDP loading check in tests/test_scale_defects.py (torchrun, 2 CPU ranks).

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 fsdp_loading_rank.py \
        PROJECT MODEL_DIR {policy|classifier|reward} OUT_DIR

The rendered project's train.py is imported (its main does not run) and its training config
read, as on a GPU node: `args.use_cpu` stays False, while ACCELERATE_USE_CPU makes the process
group gloo on the CPU. `policy` and `classifier` load the model as train.py does (its
fsdp_device_map), add LoRA adapters as the trainers do, and shard it with accelerate's
fsdp2_prepare_model, the function the Trainer calls under FSDP on GPUs (on the CPU accelerate
runs DDP, so it is called here directly). `reward` loads the reward model GRPO scores with
(train.load_reward_model) after rank-0-only loading was switched on by the reward stage.
Each rank writes what it saw to OUT_DIR/rank<N>.json.
"""

import json
import os
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    TrainingArguments,
)

PROMPT = torch.tensor([[5, 17, 42, 99, 7, 3]])


def training_args(project: Path, section: str, out: Path) -> TrainingArguments:
    training = yaml.safe_load((project / "configs" / "train.yaml").read_text())[section]
    return TrainingArguments(
        output_dir=str(out),
        fsdp=training["fsdp"],
        fsdp_config=training["fsdp_config"],
        ddp_backend="gloo",
        report_to="none",
    )


def placement(model: torch.nn.Module) -> dict:
    return {
        "meta_parameters": sum(p.is_meta for p in model.parameters()),
        "parameters": sum(1 for _ in model.parameters()),
        "meta_buffers": sum(b.is_meta for b in model.buffers()),
    }


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()}


def shard(project: Path, model_dir: str, kind: str, out: Path, train) -> dict:
    section = "reward_training" if (project / "rewards.py").exists() else "training"
    args = training_args(project, section, out)
    device_map = train.fsdp_device_map(args)
    if kind == "classifier":  # the score head is not in the checkpoint: rank 0 initialises it
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=3, dtype=torch.bfloat16, device_map=device_map
        )
        task_type = TaskType.SEQ_CLS
    else:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.bfloat16, device_map=device_map
        )
        task_type = TaskType.CAUSAL_LM
    loaded = placement(model)
    model = get_peft_model(model, LoraConfig(task_type=task_type, r=4, target_modules="all-linear"))
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    accelerator = Accelerator(fsdp_plugin=plugin)
    accelerator.state.fsdp_plugin = plugin  # accelerate drops it on the CPU (DDP there)
    model = fsdp2_prepare_model(accelerator, model)
    with torch.no_grad():
        logits = model(input_ids=PROMPT).logits.float()
    state = full_state(model)
    return {
        "device_map": device_map,
        "loaded": loaded,
        "sharded": placement(model),
        "sharded_parameters": sum(hasattr(p, "full_tensor") for p in model.parameters()),
        "logits": logits.flatten().tolist(),
        "checksum": float(sum(t.float().abs().sum() for t in state.values())),
    }


def reward(project: Path, model_dir: str, out: Path, train) -> dict:
    train.fsdp_device_map(training_args(project, "reward_training", out))  # the reward stage's
    cfg = {"reward_model": {"save_dir": model_dir, "dtype": "bfloat16", "trust_remote_code": False}}
    model, _ = train.load_reward_model(cfg, torch.device("cpu"))
    with torch.no_grad():
        scores = model(input_ids=PROMPT).logits.float()
    return {"loaded": placement(model), "logits": scores.flatten().tolist()}


def main() -> None:
    project, model_dir, kind, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
    sys.path.insert(0, str(project))
    import train  # the rendered train.py

    if kind == "reward":
        result = reward(project, model_dir, out, train)
    else:
        result = shard(project, model_dir, kind, out, train)
    rank = torch.distributed.get_rank()
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()
    # As the projects' workers do (config.exit_worker): the interpreter's teardown
    # aborts a finished gloo worker now and then.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
