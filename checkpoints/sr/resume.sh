#!/usr/bin/env bash
# Resume (or start) one of the long super-resolution runs on this CPU, one thread, in the background.
#
#   checkpoints/sr/resume.sh RUN        RUN: vdsr or n3net-sr
#
# Both train with the same steps, seed and batches (the budget preset: Adam, lr 1e-3 held for 30 %
# of the steps, then decayed to 1e-6). The run trains in runs/sr/RUN (git-ignored). The first call
# copies the committed checkpoint (RUN/last.pt, RUN/log.csv) there; later calls continue from
# runs/sr/RUN. Stop a run with `kill PID` (it checkpoints its last step and exits); copy last.pt,
# log.csv and config.json back into checkpoints/sr/RUN/ before committing.
set -euo pipefail
run=${1:?usage: resume.sh vdsr|n3net-sr}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
case "$run" in
  vdsr) model=(--arch vdsr) ;;
  n3net-sr) model=(--arch n3net-sr) ;;  # init "residual", the default
  *) echo "resume.sh: unknown run '$run' (vdsr or n3net-sr)" >&2; exit 2 ;;
esac
out="$root/runs/sr/$run"
# bf16 autocast and channels-last pay only where the CPU computes bf16 natively (AVX512-BF16 or
# AMX); elsewhere bf16 is emulated, ~12x slower than float32, and the run continues in float32.
if python -c 'import sys, torch; from n3net.train.precision import native_bf16
sys.exit(not native_bf16(torch.device("cpu")))'; then amp=bf16 layout=--channels-last
else amp=none layout=--no-channels-last; fi
mkdir -p "$out"
if [[ ! -f "$out/last.pt" && -f "$here/$run/last.pt" ]]; then
  cp "$here/$run/last.pt" "$here/$run/log.csv" "$out/"
fi
cd "$root"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 n3net train --task sr "${model[@]}" \
  --batch-size 8 --max-steps 2500 --device cpu --amp "$amp" "$layout" --seed 0 \
  --set train.val_every=250 --set train.log_every=50 --set train.ckpt_every=0 \
  --set train.ckpt_minutes=10 --set train.tensorboard=false --set 'train.progress="lines"' \
  --out "$out" --resume auto >> "$out.log" 2>&1 &
echo "started $run (pid $!): tail -f $out.log"
