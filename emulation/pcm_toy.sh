#!/usr/bin/env bash
# The toy run (15-10-10-5 student-teacher, DFC-SSA, one epoch) on PCM hardware:
# train, export the crossbar netlist, run it in plain ngspice, and validate the hardware
# circuit against its emulation (same device draws) beside the ideal model; 0.5 V per model
# unit keeps the somas inside the op-amps' +-1.4 V rails.
#
#   PYTHON=.venv/bin/python emulation/pcm_toy.sh [OUT_DIR]
set -euo pipefail
PYTHON=${PYTHON:-python}
OUT=${1:-emulation/out/pcm-toy}
mkdir -p "$OUT"
"$PYTHON" -m dfc_analog.train --train-samples 256 --val-samples 64 --test-samples 16 \
    --epochs 1 --method dfc-ssa --no-progress --out "$OUT/run"
"$PYTHON" -m dfc_analog.export "$OUT/run" --hardware pcm --v-scale 0.5 \
    --netlist "$OUT/pcm_wake.cir"
if command -v ngspice >/dev/null; then
    ngspice -b "$OUT/pcm_wake.cir" > "$OUT/pcm_wake.log" 2>&1
    grep -i "e_supply" "$OUT/pcm_wake.log" || true
fi
"$PYTHON" -m dfc_analog.validate "$OUT/run" --hardware pcm --v-scale 0.5 --samples 4 \
    --out "$OUT/validation-pcm" --no-progress
