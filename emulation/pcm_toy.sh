#!/usr/bin/env bash
# The toy run (15-10-10-5 student-teacher, DFC-SSA, one epoch) on PCM hardware:
# train, export the crossbar netlist, run it in plain ngspice, and validate the hardware
# circuit against its emulation (same device draws) beside the ideal model; 0.5 V per model
# unit keeps the somas inside the op-amps' +-1.4 V rails.
#
#   PYTHON=.venv/bin/python emulation/pcm_toy.sh [OUT_DIR]
#   HARDWARE=pcm-noise PYTHON=.venv/bin/python emulation/pcm_toy.sh   # read noise as a process
set -euo pipefail
PYTHON=${PYTHON:-python}
HARDWARE=${HARDWARE:-pcm}
OUT=${1:-emulation/out/$HARDWARE-toy}
mkdir -p "$OUT"
"$PYTHON" -m dfc_analog.train --train-samples 256 --val-samples 64 --test-samples 16 \
    --epochs 1 --method dfc-ssa --no-progress --out "$OUT/run"
"$PYTHON" -m dfc_analog.export "$OUT/run" --hardware "$HARDWARE" --v-scale 0.5 \
    --netlist "$OUT/${HARDWARE}_wake.cir"
if command -v ngspice >/dev/null; then
    ngspice -b "$OUT/${HARDWARE}_wake.cir" > "$OUT/${HARDWARE}_wake.log" 2>&1
    grep -i "e_supply" "$OUT/${HARDWARE}_wake.log" || true
fi
"$PYTHON" -m dfc_analog.validate "$OUT/run" --hardware "$HARDWARE" --v-scale 0.5 --samples 4 \
    --out "$OUT/validation-$HARDWARE" --no-progress
