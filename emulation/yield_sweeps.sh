#!/usr/bin/env bash
# Deployment studies of trained runs on PCM chips (dfc-sweep deploy): the test error's mean ± std
# over the chips and the yield, against the drift time (1 s .. 1 year), the conductance states
# (bits), the programming-noise scale, the op-amps' DC gain A0 (10 .. 1e6) and G_max / G_min.
# Every run is evaluated on the same chips; each sweep writes deployment.csv, deployment.png
# (metric vs the field, a line per run, shaded ± std) and table.md into its folder, and resumes
# where it stopped when run again.
#
#   PYTHON=.venv/bin/python emulation/yield_sweeps.sh RUN_DIR [RUN_DIR ...]
#   (e.g. the four runs bench/robustness.py trains into runs/bench-robustness/)
# Settings through the environment: CHIPS (default 100), V_SCALE (0.05 V per unit: MNIST somas
# reach 16 units, inside the ±1.4 V rails), OUT (emulation/out/yield)
set -euo pipefail
PYTHON=${PYTHON:-python}
CHIPS=${CHIPS:-100}
V_SCALE=${V_SCALE:-0.05}
OUT=${OUT:-emulation/out/yield}
if [ "$#" -lt 1 ]; then
    echo "usage: $0 RUN_DIR [RUN_DIR ...]" >&2
    exit 2
fi
sweep() {
    local name=$1; shift
    "$PYTHON" -m dfc_analog.sweep deploy "$@" --hardware pcm --realisations "$CHIPS" \
        --v-scale "$V_SCALE" --out "$OUT/$name" --no-progress
}
sweep drift "$@" --vary synapse.drift_time=1,60,3600,86400,2592000,31536000
sweep bits "$@" --vary synapse.bits=2,3,4,5,6,8
sweep programming-noise "$@" --vary synapse.programming_noise=0,0.5,1,2,4
sweep opamp-gain "$@" --vary amplifier.gain=10,100,1000,10000,1000000
sweep g-ratio "$@" --vary synapse.g_ratio=2,5,10,100,1000
