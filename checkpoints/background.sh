#!/usr/bin/env bash
# Start or continue one long training run in the background, one CPU thread, niced; the resume
# scripts beside it (checkpoints/FAMILY/resume.sh) call it with their run's arguments.
#
#   checkpoints/background.sh FAMILY RUN [n3net train arguments...]
#
# The run trains in runs/FAMILY/RUN (git-ignored) and logs to runs/FAMILY/RUN.log. The first
# call copies the committed checkpoint (checkpoints/FAMILY/RUN/{last.pt,log.csv}) there; later
# calls continue from runs/FAMILY/RUN (--resume auto). A finished run (its summary.json
# committed) is only copied there. bf16 autocast and channels-last pay only where the CPU
# computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, ~12x slower than
# float32, so the run goes on in float32 there (n3net.train.precision decides), unless its
# arguments name the precision (--amp), as the correspondence runs do (float32).
# Stop a run with `kill PID`: it checkpoints its last step and exits. THREADS=2 before the
# command gives the run two threads (for when it is the only run on a 2-core machine).
set -euo pipefail
family=${1:?usage: background.sh FAMILY RUN [n3net train arguments...]}
run=${2:?usage: background.sh FAMILY RUN [n3net train arguments...]}
shift 2
threads=${THREADS:-1}
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "background.sh: THREADS must be a positive integer, not '$threads'" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
committed="$here/$family/$run"
out="$root/runs/$family/$run"
mkdir -p "$out"
if [[ -f "$committed/summary.json" ]]; then  # a finished run, kept until its weights ship
  cp -n "$committed"/* "$out/"
  echo "$family/$run has finished: its weights and logs are in $out"
  exit 0
fi
if [[ ! -f "$out/last.pt" && -f "$committed/last.pt" ]]; then
  cp "$committed/last.pt" "$committed/log.csv" "$out/"
fi
if [[ " $* " == *" --amp "* ]]; then precision=()  # the run names its own precision
elif python -c 'import sys, torch; from n3net.train.precision import native_bf16
sys.exit(not native_bf16(torch.device("cpu")))'; then precision=(--amp bf16 --channels-last)
else precision=(--amp none --no-channels-last); fi
cd "$root"
OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads nohup nice -n 5 n3net train "$@" \
  --device cpu "${precision[@]}" \
  --set train.val_every=250 --set train.log_every=50 --set train.ckpt_every=0 \
  --set train.ckpt_minutes=10 --set train.tensorboard=false --set 'train.progress="lines"' \
  --out "$out" --resume auto >> "$out.log" 2>&1 &
echo "started $family/$run (pid $!): tail -f $out.log"
