#!/usr/bin/env bash
# GPU training recipe for one device call: train each ARCH for the same BUDGET (one after the
# other) with the paper's protocol, then evaluate on Set12 and BSD68.
#
# Usage (from the repository root):  scripts/train_gpu.sh OUT_DIR BUDGET ARCH [ARCH ...]
#   BUDGET: minutes of training steps (e.g. 5), or a number of steps (e.g. 12000steps: the
#   paper's comparison, every ARCH with the same steps and therefore the same batches)
#   e.g. scripts/train_gpu.sh /tmp/runs 5 dncnn n3net
#        scripts/train_gpu.sh /tmp/runs 12000steps n3net dncnn
# Before: `python scripts/prepare_gpu_data.py` on the CPU machine (writes .gpu/data, ~43 MB) and
# carry `.gpu/data` with the device call. Needs only the device's own python3 with torch; the package
# runs from src/ (PYTHONPATH), nothing is installed.
#
# Per ARCH, OUT_DIR/ARCH/ gets model.safetensors (best validation weights), last.safetensors,
# last.pt (checkpoint), log.csv, curves.png, summary.json, config.json, tensorboard/. A rerun with
# the same OUT_DIR resumes unfinished runs and skips finished ones.
#
# Environment (defaults in brackets):
#   DATA [.gpu/data]  folder with train/ (and set12/, bsd68/ for the evaluation)
#   SIGMA [25]  BATCH [32]  CROP [80]  AMP [bf16]  CHANNELS_LAST [1]  DEVICE [cuda]
#   SAMPLER [device]  WORKERS [0]  VAL_IMAGES [8]  VAL_EVERY [1000]  LOG_EVERY [100]
#   CKPT_MINUTES [2]  SEED [0]  PYTHON [python3]
#   MODEL_ARGS  more `n3net train` arguments for every ARCH (word-split), e.g.
#               "--set model.kwargs.depth=17"
#   EVAL [1]    evaluate the trained models on DATA/set12 and DATA/bsd68 when `n3net evaluate`
#               exists (OUT_DIR/eval.json, OUT_DIR/eval.txt)
#   PACK        path of a .tar of OUT_DIR without the *.pt checkpoints, rewritten after every
#               run and at exit, also after a failure (e.g. PACK=$OUT/runs.tar on the device)
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 OUT_DIR BUDGET ARCH [ARCH ...]   (BUDGET: MINUTES or Nsteps)" >&2
    exit 2
fi
OUT_DIR=$1
BUDGET=$2
shift 2
ARCHS=("$@")
if [[ "$BUDGET" =~ ^[0-9]+steps$ ]]; then
    BUDGET_ARGS=(--max-steps "${BUDGET%steps}")
    BUDGET_TEXT="${BUDGET%steps} steps"
elif [[ "$BUDGET" =~ ^[0-9]*\.?[0-9]+$ ]]; then
    BUDGET_ARGS=(--max-minutes "$BUDGET")
    BUDGET_TEXT="$BUDGET min"
else
    echo "error: BUDGET must be minutes (e.g. 5) or steps (e.g. 12000steps), got '$BUDGET'" >&2
    exit 2
fi

DATA=${DATA:-.gpu/data}
SIGMA=${SIGMA:-25}
BATCH=${BATCH:-32}
CROP=${CROP:-80}
AMP=${AMP:-bf16}
CHANNELS_LAST=${CHANNELS_LAST:-1}
DEVICE=${DEVICE:-cuda}
SAMPLER=${SAMPLER:-device}
WORKERS=${WORKERS:-0}
VAL_IMAGES=${VAL_IMAGES:-8}
VAL_EVERY=${VAL_EVERY:-1000}
LOG_EVERY=${LOG_EVERY:-100}
CKPT_MINUTES=${CKPT_MINUTES:-2}
SEED=${SEED:-0}
PYTHON=${PYTHON:-python3}
EVAL=${EVAL:-1}
PACK=${PACK:-}
read -r -a MODEL_ARGS_ARRAY <<<"${MODEL_ARGS:-}"

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

pack() {  # after every run and at exit, so that a call killed at its time limit keeps results
    if [[ -n "$PACK" && -d "$OUT_DIR" ]]; then
        tar -C "$(dirname "$OUT_DIR")" --exclude='*.pt' -cf "$PACK.tmp" "$(basename "$OUT_DIR")" &&
            mv -f "$PACK.tmp" "$PACK" &&
            echo "packed $OUT_DIR (without checkpoints) into $PACK ($(du -h "$PACK" | cut -f1))"
    fi
}
trap pack EXIT

if [[ ! -d "$DATA/train" ]]; then
    echo "error: $DATA/train not found; run scripts/prepare_gpu_data.py and carry .gpu" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
"$PYTHON" - <<'EOF'
import torch
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
print(f"torch {torch.__version__}, cuda {torch.version.cuda}: {name}", flush=True)
EOF
echo "training ${ARCHS[*]} for $BUDGET_TEXT each: sigma $SIGMA, batch $BATCH of ${CROP}x$CROP," \
    "amp $AMP, channels-last $CHANNELS_LAST, sampler $SAMPLER, data $DATA/train"

channels_flag=--no-channels-last
if [[ "$CHANNELS_LAST" == 1 ]]; then channels_flag=--channels-last; fi
train_arch() {  # ARCH AMP: one `n3net train` run into OUT_DIR/ARCH (resumes a checkpoint)
    "$PYTHON" -m n3net train --arch "$1" --sigma "$SIGMA" "${BUDGET_ARGS[@]}" \
        --batch-size "$BATCH" --set "data.crop_size=$CROP" --device "$DEVICE" --amp "$2" \
        "$channels_flag" --sampler "$SAMPLER" --workers "$WORKERS" --seed "$SEED" \
        --data-root "$DATA" --set 'data.train_dirs=["train"]' --set "data.val_images=$VAL_IMAGES" \
        --set "train.val_every=$VAL_EVERY" --set "train.log_every=$LOG_EVERY" \
        --set "train.ckpt_minutes=$CKPT_MINUTES" --set train.progress=lines \
        --out "$OUT_DIR/$1" --resume auto "${MODEL_ARGS_ARRAY[@]}"
}

failed=()
for arch in "${ARCHS[@]}"; do
    run_dir="$OUT_DIR/$arch"
    if [[ -f "$run_dir/model.safetensors" ]]; then
        echo "== $arch: already trained in $run_dir, skipped"
        continue
    fi
    echo "== $arch: $(date -u +%H:%M:%S) start"
    start=$SECONDS
    if train_arch "$arch" "$AMP"; then
        echo "== $arch: done in $((SECONDS - start)) s"
    elif [[ "$AMP" != none && ! -f "$run_dir/last.pt" ]]; then
        # Failed before its first checkpoint: most likely an op without bf16 support.
        echo "== $arch: failed with --amp $AMP before any checkpoint; retrying with --amp none" >&2
        if train_arch "$arch" none; then
            echo "== $arch: done (amp none) in $((SECONDS - start)) s"
        else
            echo "== $arch: FAILED after $((SECONDS - start)) s" >&2
            failed+=("$arch")
        fi
    else
        echo "== $arch: FAILED after $((SECONDS - start)) s" >&2
        failed+=("$arch")
    fi
    pack
done

echo "== summary (budget $BUDGET_TEXT each)"
"$PYTHON" - "$OUT_DIR" "${ARCHS[@]}" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'arch':<14}{'steps':>9}{'minutes':>9}{'img/s':>9}{'best val dB':>13}{'at step':>9}"
      f"  amp   hardware")
for arch in sys.argv[2:]:
    path = out / arch / "summary.json"
    if not path.is_file():
        print(f"{arch:<14}{'(no summary)':>9}")
        continue
    s = json.loads(path.read_text())
    best = "n/a" if s["best_val_psnr"] is None else f"{s['best_val_psnr']:.3f}"
    print(f"{arch:<14}{s['steps']:>9}{s['minutes']:>9.2f}{s['imgs_per_s']:>9.0f}{best:>13}"
          f"{str(s['best_step']):>9}  {s['amp']:<5} {s['hardware']}")
EOF

if [[ "$EVAL" == 1 ]]; then
    models=()
    for arch in "${ARCHS[@]}"; do
        if [[ -f "$OUT_DIR/$arch/model.safetensors" ]]; then
            models+=("$OUT_DIR/$arch/model.safetensors")
        fi
    done
    eval_sets=()
    for name in set12 bsd68; do
        if [[ -d "$DATA/$name" ]]; then eval_sets+=("$DATA/$name"); fi
    done
    if ! "$PYTHON" -m n3net evaluate --help >/dev/null 2>&1; then
        echo "== evaluation skipped: no \`n3net evaluate\` command"
    elif [[ ${#models[@]} -eq 0 || ${#eval_sets[@]} -eq 0 ]]; then
        echo "== evaluation skipped: no trained model or no test folder in $DATA"
    else
        echo "== evaluation on ${eval_sets[*]} at sigma $SIGMA"
        "$PYTHON" -m n3net evaluate --model "${models[@]}" --sigma "$SIGMA" \
            --data "${eval_sets[@]}" --device "$DEVICE" --json "$OUT_DIR/eval.json" --overwrite \
            2>&1 | tee "$OUT_DIR/eval.txt" || echo "== evaluation FAILED" >&2
    fi
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
