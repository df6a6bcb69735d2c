#!/usr/bin/env bash
# Validate the default toy run (15-10-10-5, the paper's Fig. 3 task) against its circuit, at
# ngspice's default tolerances and at tight ones. Trains the run first if it is missing (~1.5 min).
#
#   validation/validate_toy.sh [RUN_DIR] [SAMPLES]
#
# Reports: validation/reports/toy-default/ and validation/reports/toy-tight/ (report.md,
# report.json, trajectories.npz, plots/). Exit status: 0 both pass, 1 a validation failed,
# 2 bad input.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:-runs/student-teacher-dfc-seed42}
SAMPLES=${2:-10}

if [ ! -f "$RUN/checkpoint.pt" ]; then
    "$PY" -m dfc_analog.train --out "$RUN" --no-progress
fi
status=0
validate() {   # keep the worst exit status: 2 (bad input) over 1 (failed) over 0
    "$PY" -m dfc_analog.validate "$RUN" --samples "$SAMPLES" "$@" || {
        rc=$?; if [ "$rc" -gt "$status" ]; then status=$rc; fi; }
}
validate --out validation/reports/toy-default
validate --reltol 1e-6 --out validation/reports/toy-tight
validate --phase feedforward --points 11 --out validation/reports/toy-feedforward
exit "$status"
