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
mkdir -p "$out"
if [[ ! -f "$out/last.pt" && -f "$here/$run/last.pt" ]]; then
  cp "$here/$run/last.pt" "$here/$run/log.csv" "$out/"
fi
cd "$root"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 n3net train --task sr "${model[@]}" \
  --batch-size 8 --max-steps 5000 --device cpu --amp bf16 --channels-last --seed 0 \
  --set train.val_every=250 --set train.log_every=50 --set train.ckpt_every=0 \
  --set train.ckpt_minutes=10 --set train.tensorboard=false --set 'train.progress="lines"' \
  --out "$out" --resume auto >> "$out.log" 2>&1 &
echo "started $run (pid $!): tail -f $out.log"
