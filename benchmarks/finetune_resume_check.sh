#!/usr/bin/env bash
# A rendered SFT or DPO project (cuda or multi-gpu), at its real model shape, on its GPUs: 24
# steps with an evaluation and a checkpoint at 12 and 24, then a resume from checkpoint 12 to
# step 24. It checks that the project's defaults (compiled layers, under DDP on multi-gpu)
# train, save and resume: compare the two runs' losses for steps 13-24 in the logs.
#
#   scaffold new bench-sft-ddp --task sft --hardware multi-gpu --gpus 2 --yes
#   bash benchmarks/finetune_resume_check.sh bench-sft-ddp [LOG_DIR]
#   scaffold new bench-dpo --task dpo --hardware cuda --yes
#   bash benchmarks/finetune_resume_check.sh bench-dpo [LOG_DIR]
set -euo pipefail
project=$(realpath "$1")
logs=$(realpath "${2:-.}")
task=$(sed -n 's/^task: //p' "$project/.copier-answers.yml")
case "$task" in
    sft | dpo) ;;
    *) echo "$project is a '$task' project: this check runs SFT and DPO projects" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the model and data, also when a run fails
cd "$(dirname "$0")"
# Qwen2.5-0.5B's shape with random weights, and chat data of the same spread as sft_throughput.py.
python - "$work" "$task" <<'PY'
import sys
from pathlib import Path

from sft_throughput import QWEN2_5_0_5B, build_model, write_data

work, task = Path(sys.argv[1]), sys.argv[2]
build_model(work / "model", QWEN2_5_0_5B)
write_data(work / "data", task, 32 * 2 * 24, (20, 400), (20, 1000))
PY
cd "$project"
launch=(python train.py --config configs/train.yaml)
if [[ -f launch/torchrun.sh ]]; then
    launch=(bash launch/torchrun.sh)
fi
args=(--model.name "$work/model" --data.train_file "$work/data/train.jsonl"
      --data.validation_file "$work/data/validation.jsonl" --training.max_steps 24
      --training.logging_steps 2 --training.eval_steps 12 --training.save_steps 12
      --training.output_dir "$work/run" --training.report_to none)
"${launch[@]}" "${args[@]}" > "$logs/train.log" 2>&1
"${launch[@]}" "${args[@]}" --resume "$work/run/checkpoint-12" > "$logs/resume.log" 2>&1
for log in train resume; do
    echo "$log:"
    grep -oE "\{'loss': '[0-9.]+'|'eval_loss': '[0-9.]+'|'train_runtime': '[0-9.]+'" "$logs/$log.log"
done
