#!/usr/bin/env bash
# The GPU checks and measurements recorded in the README ("Measured on a GPU"), in one go, on a
# machine with a CUDA GPU and the `ultralytics` extra installed:
#
#   benchmarks/gpu_suite.sh [DATA_DIR] [OUT_DIR]
#
# DATA_DIR is a labeled folder (default ../shared/data/mall), OUT_DIR gets the JSON results and a
# log (default out/gpu). Models come from the catalog's models dir as usual (fetch them first:
# `crowdwatch models fetch yolov8s-person csrnet-density`; csrnet-mall with `crowdwatch models
# train csrnet-mall`). Each step is bounded and a failed one does not stop the others.
set -u
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/mall}
OUT=${2:-out/gpu}
PY=${PY:-.venv/bin/python}
DENSITY=${DENSITY_MODEL:-csrnet-mall}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
step() { echo; echo "=== $1 ($(date +%T))"; shift; timeout "$@" || echo "FAILED (rc $?)"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step "pytest -m gpu" 300 "$PY" -m pytest -q -m gpu tests/detectors -rs
  step "detector speed" 300 "$PY" benchmarks/detector_speed.py --backends ultralytics --device cuda \
    --batch 8 16 32 --repeat 20 --tiled --json "$OUT/detector.json"
  step "density speed" 300 "$PY" benchmarks/density_speed.py --data "$DATA" --model "$DENSITY" \
    --backends torch-cuda torch-cuda-fp32 onnx-cpu --limit 20 --repeat 3 --batch 8 --json "$OUT/density.json"
  step "accuracy" 600 "$PY" benchmarks/accuracy.py --data "$DATA" --method detector tiled \
    --model yolov8s-person --detector-type ultralytics --device cuda --json "$OUT/accuracy.json"
  step "worker, demo zones" 300 "$PY" benchmarks/worker_fps.py --cameras 8 --batch-size 1 8 --device cuda \
    --density-model "$DENSITY" --warmup 8 --duration 20 --json "$OUT/worker.json"
  for method in density tiled; do
    step "worker, $method zones" 300 "$PY" benchmarks/worker_fps.py --cameras 8 --batch-size 8 \
      --device cuda --density-model "$DENSITY" --method "$method" --warmup 8 --duration 20 \
      --json "$OUT/worker-$method.json"
  done
  step "worker, 16 cameras" 300 "$PY" benchmarks/worker_fps.py --cameras 16 --batch-size 16 --device cuda \
    --density-model "$DENSITY" --method detector --warmup 8 --duration 20 --json "$OUT/worker-16.json"
} 2>&1 | tee "$OUT/log.txt"
