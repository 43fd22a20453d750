#!/usr/bin/env bash
# Resume (or start) one of the correspondence runs on this CPU, one thread, in the background.
#
#   checkpoints/corr/resume.sh RUN      RUN: cnnet-seed0|1|2 or cnnet-n3-seed0|1|2
#
# The runs of the CNNet / CNNet + N3 comparison at the reduced CPU setting of
# docs/correspondences.md (batch 16, N = 1000, 2,000 steps, the essential loss from step 400),
# exactly as scripts/train_correspondences.py trains them, in float32 (bf16 autocast gains
# nothing at N = 1000), into runs/corr/RUN (../background.sh says how). Stop a run with
# `kill PID` (it checkpoints its last step and exits); copy last.pt, log.csv and config.json
# back into checkpoints/corr/RUN/ before committing.
set -euo pipefail
run=${1:?usage: resume.sh cnnet-seedS|cnnet-n3-seedS}
case "$run" in
  cnnet-seed[012] | cnnet-n3-seed[012]) ;;
  *) echo "resume.sh: unknown run '$run' (cnnet-seed0|1|2 or cnnet-n3-seed0|1|2)" >&2; exit 2 ;;
esac
arch=${run%-seed*}
seed=${run##*-seed}
exec "$(dirname "${BASH_SOURCE[0]}")/../background.sh" corr "$run" --task correspondences \
  --arch "$arch" --seed "$seed" --max-steps 2000 --batch-size 16 --points 1000 \
  --train-pairs 10000 --val-pairs 500 --essential-after-steps 400 --amp none --no-channels-last
