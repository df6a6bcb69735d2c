#!/usr/bin/env bash
# Validate an MNIST-size network (784-256-256-256-10) against its circuit: 10 test digits at
# ngspice's default tolerances, in parallel processes (one per core). Trains the run first if it
# is missing: one epoch of the paper's MNIST DFC (fixed feedback) preset on the 10,000-digit
# MNIST subset in ../shared/data/mnist-10k (a few minutes on 2 cores).
#
#   validation/validate_mnist.sh [RUN_DIR] [SAMPLES]
#
# Report: validation/reports/mnist/. Exit status: 0 pass, 1 validation failed, 2 bad input.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:-runs/mnist-dfc-fixed-1epoch}
SAMPLES=${2:-10}
DATA=${DATA_DIR:-../shared/data/mnist-10k}

if [ ! -f "$RUN/checkpoint.pt" ]; then
    "$PY" -m dfc_analog.train --preset mnist-dfc-fixed --data-dir "$DATA" --epochs 1 \
        --out "$RUN" --no-progress
fi
start=$(date +%s)
status=0
"$PY" -m dfc_analog.validate "$RUN" --samples "$SAMPLES" --points 201 \
    --out validation/reports/mnist \
    || status=$?
echo "validated $SAMPLES samples in $(( $(date +%s) - start )) s"
exit "$status"
