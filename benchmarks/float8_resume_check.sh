#!/usr/bin/env bash
# A rendered large pretraining project (FSDP) on one GPU with float8 (`training.float8`) and
# gpt2-124m's shape on random tokens: 4 steps one way, then a resume to step 6 the other way,
# float8 -> bf16 and bf16 -> float8. It checks that float8 leaves the checkpoints and
# model.safetensors as they are without it: each resume prints "resumed from ... at step 4",
# and each model.safetensors loads into a plain GPT with no missing or unexpected keys.
# It needs a GPU with float8 matmuls and torchao.
#
# Further arguments go to every train.py run, after the script's own (the last one wins).
#
#   scaffold new pl8 --task pretraining --hardware multi-gpu --gpus 8 --scale large --yes
#   bash benchmarks/float8_resume_check.sh pl8
#   bash benchmarks/float8_resume_check.sh pl8 --training.compile true \
#       --model.gradient_checkpointing true
set -euo pipefail
project=$(realpath "$1")
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$(dirname "$0")"
python -c "import sys; from pathlib import Path; from pretraining_throughput import write_tokens
Path(sys.argv[1]).mkdir(); write_tokens(Path(sys.argv[1]), 3_000_000)" "$work/data"
cd "$project"
args=(--config configs/train.yaml --data.out_dir "$work/data" --data.num_workers 0
      --model.preset gpt2-124m --training.batch_size 4 --training.grad_accum_steps 1
      --training.warmup_steps 1 --training.lr_decay_steps 8 --training.compile false
      --eval.interval 2 --eval.batches 1 --checkpoint.interval 2 --logging.interval 2 "$@")
for first in true false; do
  second=$([ "$first" = true ] && echo false || echo true)
  out="$work/run-float8-$first"
  torchrun --standalone --nproc_per_node 1 train.py "${args[@]}" --training.out_dir "$out" \
    --training.max_steps 4 --training.float8 "$first"
  torchrun --standalone --nproc_per_node 1 train.py "${args[@]}" --training.out_dir "$out" \
    --training.max_steps 6 --training.float8 "$second" --resume
  python - "$out/model.safetensors" <<'PY'
import sys

import safetensors.torch
from model import GPT, GPTConfig

model = GPT(GPTConfig.from_preset("gpt2-124m", vocab_size=50304, block_size=2048))
missing, unexpected = safetensors.torch.load_model(model, sys.argv[1])
print(f"{sys.argv[1]}: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
PY
done
