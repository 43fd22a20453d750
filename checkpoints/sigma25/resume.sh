#!/usr/bin/env bash
# Resume (or start) one of the long sigma = 25 runs on this CPU, one thread, in the background.
#
#   checkpoints/sigma25/resume.sh RUN        RUN: n3net-ls800, n3net-ls1 or dncnn-ls800
#
# The run trains in runs/sigma25/RUN (../background.sh says how). Stop a run with `kill PID` (it
# checkpoints its last step and exits); copy last.pt, log.csv and config.json back into
# checkpoints/sigma25/RUN/ before committing.
set -euo pipefail
run=${1:?usage: resume.sh n3net-ls800|n3net-ls1|dncnn-ls800}
case "$run" in
  n3net-ls800) model=(--arch n3net --set 'model.kwargs.init="authors"'); scale=800 ;;
  n3net-ls1) model=(--arch n3net --set 'model.kwargs.init="authors"'); scale=1 ;;
  dncnn-ls800) model=(--arch dncnn); scale=800 ;;
  *) echo "resume.sh: unknown run '$run' (n3net-ls800, n3net-ls1 or dncnn-ls800)" >&2; exit 2 ;;
esac
exec "$(dirname "${BASH_SOURCE[0]}")/../background.sh" sigma25 "$run" "${model[@]}" --sigma 25 \
  --set task.loss_scale=$scale --batch-size 8 --max-steps 40000 --set train.lr_hold=0.5 --seed 0
