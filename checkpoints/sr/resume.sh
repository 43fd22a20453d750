#!/usr/bin/env bash
# Resume (or start) one of the long super-resolution runs on this CPU, one thread, in the background.
#
#   checkpoints/sr/resume.sh RUN        RUN: vdsr or n3net-sr
#
# Both train with the same steps, seed and batches (the budget preset: Adam, lr 1e-3 held for 30 %
# of the steps, then decayed to 1e-6), in runs/sr/RUN (../background.sh says how). Stop a run
# with `kill PID` (it checkpoints its last step and exits); copy last.pt, log.csv and
# config.json back into checkpoints/sr/RUN/ before committing.
set -euo pipefail
run=${1:?usage: resume.sh vdsr|n3net-sr}
case "$run" in
  vdsr) model=(--arch vdsr) ;;
  n3net-sr) model=(--arch n3net-sr) ;;  # init "residual", the default
  *) echo "resume.sh: unknown run '$run' (vdsr or n3net-sr)" >&2; exit 2 ;;
esac
exec "$(dirname "${BASH_SOURCE[0]}")/../background.sh" sr "$run" --task sr "${model[@]}" \
  --batch-size 8 --max-steps 2500 --seed 0
