#!/usr/bin/env bash
# The GPU benchmark, in one command, from the repository root on the device machine:
#
#     bash benchmarks/gpu.sh            (the device tool: run(command="bash benchmarks/gpu.sh", timeout_s=600))
#
# Needs only the machine's own python3 (torch, torchvision, transformers, tokenizers, timm, accelerate,
# safetensors, numpy, pillow, pyyaml; scikit-learn + pandas for the grid's metrics) and this checkout on
# PYTHONPATH: no network, no pretrained weights, no carried files (posters, plots and the bert-base-uncased /
# roberta-base stand-ins are generated in /tmp). Writes to $OUT (default benchmarks/results/gpu-out):
#   gpu-<device>-<date>.json   the benchmark (copy it to benchmarks/results/ and commit it)
#   grid-<device>-<date>.json  the real `thesis run` path on a small full-size grid (random init, bf16)
#   bench.log, grid.log, nvidia-smi.txt
# Wall time: ~4-6.5 min for the benchmark (sections past 270 s are skipped, torch.compile runs last),
# ~1.5 min for the grid; each step has a hard timeout so the whole script stays under 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/benchmarks/results/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export THESIS_CACHE="${THESIS_CACHE:-/tmp/thesis-cache}"  # feature caches and tokenizers stay off the tree
export TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_') if torch.cuda.is_available() else 'cpu')")
DATE=$(date -u +%F)

timeout 390 "$PY" benchmarks/run_bench.py --profile gpu --workdir /tmp \
    --out "$OUT/gpu-$DEVICE-$DATE.json" 2>&1 | tee "$OUT/bench.log"
bench=${PIPESTATUS[0]}

timeout 160 "$PY" benchmarks/run_bench.py --grid --workdir /tmp \
    --out "$OUT/grid-$DEVICE-$DATE.json" > "$OUT/grid.log" 2>&1
grid=$?
tail -n 25 "$OUT/grid.log"

echo "gpu.sh: benchmark exit $bench (124 = hit its timeout; the JSON holds every finished section), grid exit $grid"
[ "$bench" -eq 0 ] && [ "$grid" -eq 0 ]
