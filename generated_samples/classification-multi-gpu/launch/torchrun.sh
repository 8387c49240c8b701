#!/usr/bin/env bash
# Launch training on this node with torchrun (R-MULTI-NODE).
#
#   bash launch/torchrun.sh [--section.key value ...] [--resume [CHECKPOINT]]
#
# Several nodes: run the same command on every node with the same MASTER_ADDR (any one
# node's address), MASTER_PORT (default 29500) and NNODES; c10d rendezvous assigns the ranks.
#
# Preemption: SIGTERM, SIGINT or SIGUSR1 to this script makes every worker finish its
# current step, save a checkpoint and exit; the script then exits 0. Continue with --resume.
set -uo pipefail
cd "$(dirname "$0")/.."

# Check the config once, here: a mistake is one line, not one per process plus torchrun's report.
python config.py --config "${CONFIG:-configs/train.yaml}" "$@" >/dev/null || exit 2

# The workers stop when this script dies, even by SIGKILL: they watch LAUNCHER_PID.
export LAUNCHER_PID=$$
nnodes="${NNODES:-1}"
# On one node, port 0 has torchrun pick a free port (as --standalone does): two runs on one
# machine never meet in one rendezvous. Several nodes must agree on MASTER_PORT.
case "$nnodes" in
  1) default_port=0 ;;
  *) default_port=29500 ;;  # also an elastic range such as 1:4
esac
# launch/torchrun.py is torchrun reporting a failed worker in one line, not a traceback.
# torchrun would answer a stop signal by killing the workers after a 30 s grace period
# and exiting 1. It ignores them here; this script hands each one to the workers (torchrun
# starts them in their own sessions), which take as long as their step and save need.
(
  trap '' TERM INT USR1
  exec python launch/torchrun.py \
    --nnodes "$nnodes" \
    --nproc_per_node "${NPROC_PER_NODE:-8}" \
    --rdzv_id "${RDZV_ID:-classification-multi-gpu}" \
    --rdzv_backend c10d \
    --rdzv_endpoint "${MASTER_ADDR:-localhost}:${MASTER_PORT:-$default_port}" \
    --signals_to_handle SIGHUP,SIGQUIT \
    train.py --config "${CONFIG:-configs/train.yaml}" "$@"
) &
torchrun_pid=$!
forward() {
  pkill "-$1" -P "$torchrun_pid" || true
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward USR1' USR1

# A trapped signal interrupts `wait`: wait again until torchrun has exited, then take its status.
while kill -0 "$torchrun_pid" 2>/dev/null; do
  wait "$torchrun_pid"
done
wait "$torchrun_pid"
