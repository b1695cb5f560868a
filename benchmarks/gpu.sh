#!/usr/bin/env bash
# The GPU benchmark in one command, from the repository root on a machine with one NVIDIA GPU:
#
#     bash benchmarks/gpu.sh                      (OUT=folder for the results; default benchmarks/results/gpu-out)
#
# Needs only the machine's python3 (torch, torchvision, transformers, tokenizers, timm, accelerate,
# safetensors, numpy, pillow, pyyaml, scikit-learn, pandas) and this checkout: no network, no pretrained
# weights (random weights; the bert-base-uncased / roberta-base architectures are written as stand-ins in a
# scratch folder). Packages it can do without: ultralytics (YOLO), pytorch-grad-cam (Grad-CAM) are
# reported as skipped; without tensorboardX the grid writes no event files (one warning); papermill and
# jupyter-book are never imported.
#
# Steps, in the order that loses the least when the run is cut off, each in its own process under its own
# time limit, all writing one JSON ($OUT/<profile>-<gpu>-<date>.json) after every case:
#   1. machine + train     the machine's record (GPU, driver, nproc, /dev/shm, versions, load), the measured bf16
#                          matmul peak, then the eager fine-tuning steps with the full profile's settings
#   2. compile             torch.compile against eager on the same padded batch (its own limit)
#   3. extract + loader    feature extraction as the grid runs it, the fusion on cached features, the training
#                          loader, and fine-tuning fed by it (train_one_epoch)
#   4. grid                a short `thesis run` grid (run_grid: fine-tune BERT-base, ViT-B/16, then the fusion)
#   5. gpu paths + rest    detection, extraction and explanations on the GPU; detectors; the 0-worker loaders
# A step stopped at its limit (exit 124) is noted in the JSON and the script goes on: what it saved stays.
# The whole script ends within THESIS_BENCH_DEADLINE seconds (default 300) plus Python's start-up.
# Success = the JSON exists; the script prints it, its skipped list and its errors, last.
#
# THESIS_BENCH_DRY_RUN=1 runs this very script on a CPU at toy sizes (profile "dry"): the test suite does
# (tests/test_gpu_script.py), so nothing a CPU could catch breaks it on the GPU.
set -u -o pipefail
START=$SECONDS
DEADLINE="${THESIS_BENCH_DEADLINE:-300}"
RESERVE=10  # seconds kept for the bookkeeping and the summary at the end
MIN_STEP=15  # a step with less time than this left is not started (and noted as such)

cd "$(dirname "$0")/.." || { echo "gpu.sh: cannot enter the repository root" >&2; exit 1; }
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "gpu.sh: no $PY on PATH (set PYTHON=...)" >&2; exit 1; }
PROFILE=gpu
SCALE=1  # the step limits below are sized for the GPU
if [ "${THESIS_BENCH_DRY_RUN:-0}" = 1 ]; then
    # A CPU shared with other work (a test suite) may take a few times longer than the GPU's limits allow;
    # the dry run checks that every step runs, so its limits and deadline are four times the GPU's.
    PROFILE=dry SCALE=4 DEADLINE="${THESIS_BENCH_DEADLINE:-1200}"
fi
OUT="${OUT:-$PWD/benchmarks/results/gpu-out}"
mkdir -p "$OUT" || { echo "gpu.sh: cannot create $OUT" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/thesis-gpu-XXXXXX") || { echo "gpu.sh: no scratch folder" >&2; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export THESIS_CACHE="${THESIS_CACHE:-$WORK/cache}"  # feature caches and tokenizers stay off the tree
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr -c 'A-Za-z0-9._-' '_' | sed 's/_*$//')
[ -n "$GPU" ] || GPU=no-gpu
JSON="$OUT/$PROFILE-$GPU-$(date -u +%F).json"
LOG="$OUT/gpu.log"
[ -f "$JSON" ] && mv -f "$JSON" "$JSON.previous"  # a rerun starts its own file
BENCH=(benchmarks/run_bench.py --profile "$PROFILE" --out "$JSON" --workdir "$WORK")

step() {  # step NAME LIMIT_S ARGS...: run_bench.py ARGS under min(LIMIT_S, time left), noted when stopped
    local name=$1 limit=$(( $2 * SCALE )) left began code
    shift 2
    left=$(( DEADLINE - (SECONDS - START) - RESERVE ))
    if [ "$left" -lt "$MIN_STEP" ]; then
        echo "gpu.sh: $name: not started, ${left} s left"
        "$PY" "${BENCH[@]}" --not-started "$name" >>"$LOG" 2>&1
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "gpu.sh: $name (limit $limit s) ..."
    began=$SECONDS
    timeout -k 5 "$limit" "$PY" "${BENCH[@]}" "$@" --time-budget $(( limit - 12 )) >>"$LOG" 2>&1
    code=$?
    echo "gpu.sh: $name: exit $code after $(( SECONDS - began )) s"
    if [ "$code" -ne 0 ]; then
        "$PY" "${BENCH[@]}" --record-timeout "$name" --limit "$limit" --exit-code "$code" >>"$LOG" 2>&1
    fi
}

echo "gpu.sh: profile $PROFILE, GPU $GPU, results in $JSON, log in $LOG"
step machine+train 75 --sections machine,train
step compile 55 --sections compile
step extract+loader 80 --sections extract,loader
step grid 50 --grid
step gpu-paths+rest 60 --sections gpu_paths,detectors,no_workers
rm -rf "$WORK"

echo "gpu.sh: finished in $(( SECONDS - START )) s; the result, its skipped list and its errors:"
"$PY" benchmarks/run_bench.py --summary --out "$JSON"
