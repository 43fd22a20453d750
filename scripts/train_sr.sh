#!/usr/bin/env bash
# Train VDSR and N3Net-SR with the same STEPS (same seed, same batches), evaluate both and
# bicubic on Set5, Set14 and B100 at x2/x3/x4, and print the Markdown tables.
#
# Usage (from anywhere):  scripts/train_sr.sh OUT_DIR STEPS [DEVICE] [options of train_sr.py]
#   e.g. scripts/train_sr.sh runs/sr 2000 cpu
#        scripts/train_sr.sh /tmp/sr 4000 cuda --data .gpu/sr-data --pack "$OUT/sr.tar"
# The work is done by scripts/train_sr.py (its docstring lists everything it writes); the package
# runs from src/, nothing needs installing. PYTHON picks the interpreter (default python3, or the
# repository's .venv when there is one).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON=$repo/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$here/train_sr.py" "$@" --python "$PYTHON"
