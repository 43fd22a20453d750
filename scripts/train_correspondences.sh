#!/usr/bin/env bash
# The CNNet / CNNet + N3 comparison in one call: train both with the same STEPS and seeds 0, 1,
# 2, evaluate every run and the pose baselines on the synthetic test split, print a Markdown
# table (see scripts/train_correspondences.py for the layout of OUT_DIR and every option).
#
# Usage (from the repository root):
#   scripts/train_correspondences.sh OUT_DIR STEPS [DEVICE] [OPTION ...]
#   e.g. scripts/train_correspondences.sh runs/corr 2000 cpu --jobs 2
#        scripts/train_correspondences.sh $OUT/corr 2000 cuda --jobs 6 --pack $OUT/corr.tar
# The package runs from src/ (PYTHONPATH), nothing needs installing; PYTHON [python3] is the
# interpreter.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 OUT_DIR STEPS [DEVICE] [OPTION ...]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$HERE/../src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$HERE/train_correspondences.py" "$@" --python "$PYTHON"
