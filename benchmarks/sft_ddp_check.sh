#!/usr/bin/env bash
# A rendered multi-gpu SFT project, at its real model shape, on 2 GPUs: 24 steps with an
# evaluation and a checkpoint at 12 and 24, then a resume from checkpoint 12 to step 24.
# It checks that the project's defaults (compiled layers under DDP) train, save and resume;
# compare the two runs' losses for steps 13-24 in the logs.
#
#   scaffold new bench-sft-ddp --task sft --hardware multi-gpu --gpus 2 --yes
#   bash benchmarks/sft_ddp_check.sh bench-sft-ddp [LOG_DIR]
set -euo pipefail
project=$(realpath "$1")
logs=$(realpath "${2:-.}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the model and data, also when a run fails
cd "$(dirname "$0")"
# Qwen2.5-0.5B's shape with random weights, and chat data of the same spread as sft_throughput.py.
python - "$work" <<'PY'
import sys
from pathlib import Path

from sft_throughput import QWEN2_5_0_5B, build_model, write_data

work = Path(sys.argv[1])
build_model(work / "model", QWEN2_5_0_5B)
write_data(work / "data", "sft", 32 * 2 * 24, (20, 400), (20, 1000))
PY
cd "$project"
args=(--model.name "$work/model" --data.train_file "$work/data/train.jsonl"
      --data.validation_file "$work/data/validation.jsonl" --training.max_steps 24
      --training.logging_steps 2 --training.eval_steps 12 --training.save_steps 12
      --training.output_dir "$work/run" --training.report_to none)
bash launch/torchrun.sh "${args[@]}" > "$logs/ddp_train.log" 2>&1
bash launch/torchrun.sh "${args[@]}" --resume "$work/run/checkpoint-12" > "$logs/ddp_resume.log" 2>&1
for log in ddp_train ddp_resume; do
    echo "$log:"
    grep -oE "\{'loss': '[0-9.]+'|'eval_loss': '[0-9.]+'|'train_runtime': '[0-9.]+'" "$logs/$log.log"
done
