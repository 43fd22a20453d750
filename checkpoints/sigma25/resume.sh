#!/usr/bin/env bash
# Resume (or start) one of the long sigma = 25 runs on this CPU, one thread, in the background.
#
#   checkpoints/sigma25/resume.sh RUN        RUN: n3net-ls800, n3net-ls1 or dncnn-ls800
#
# The run trains in runs/sigma25/RUN (git-ignored). The first call copies the committed
# checkpoint (RUN/last.pt, RUN/log.csv) there; later calls continue from runs/sigma25/RUN.
# Stop a run with `kill PID` (it checkpoints its last step and exits); copy last.pt, log.csv and
# config.json back into checkpoints/sigma25/RUN/ before committing.
set -euo pipefail
run=${1:?usage: resume.sh n3net-ls800|n3net-ls1|dncnn-ls800}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
case "$run" in
  n3net-ls800) model=(--arch n3net --set 'model.kwargs.init="authors"'); scale=800 ;;
  n3net-ls1) model=(--arch n3net --set 'model.kwargs.init="authors"'); scale=1 ;;
  dncnn-ls800) model=(--arch dncnn); scale=800 ;;
  *) echo "resume.sh: unknown run '$run' (n3net-ls800, n3net-ls1 or dncnn-ls800)" >&2; exit 2 ;;
esac
out="$root/runs/sigma25/$run"
mkdir -p "$out"
if [[ ! -f "$out/last.pt" && -f "$here/$run/last.pt" ]]; then
  cp "$here/$run/last.pt" "$here/$run/log.csv" "$out/"
fi
# bf16 autocast and channels-last pay only where the CPU computes bf16 natively (AVX512-BF16 or
# AMX); elsewhere bf16 is emulated, ~12x slower than float32, and the run continues in float32.
if python -c 'import sys, torch; from n3net.train.precision import native_bf16
sys.exit(not native_bf16(torch.device("cpu")))'; then amp=bf16 layout=--channels-last
else amp=none layout=--no-channels-last; fi
cd "$root"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 n3net train "${model[@]}" --sigma 25 \
  --set task.loss_scale=$scale --batch-size 8 --max-steps 40000 --set train.lr_hold=0.5 \
  --device cpu --amp "$amp" "$layout" --seed 0 \
  --set train.val_every=250 --set train.log_every=50 --set train.ckpt_every=0 \
  --set train.ckpt_minutes=10 --set train.tensorboard=false --set 'train.progress="lines"' \
  --out "$out" --resume auto >> "$out.log" 2>&1 &
echo "started $run (pid $!): tail -f $out.log"
