"""The sleep phase on the circuit against the model's: the toy net's feedback update (eq. 13)
integrated by the circuit, driven by the same noise path as the model, and over noise seeds.

Toy net 15-10-10-5 (tests/test_spice.toy), the run defaults' sleep constants (SleepParams():
T = 0.1 τ_u in 50 Euler–Maruyama steps of 0.002 τ_u, τ_v = 0.01, τ_A = 0.3). For each of
``--seeds`` paths of the seed stream 'sleep_circuit' the circuit (circuit.learning.sleep_phase,
PWL noise) is compared with feedback_update driven by the zero-order hold of the same draws at
dt/m, m = 1 (the model's own step), 4, 16, 64: the gap shrinks as 1/m, the model's
Euler–Maruyama error, to the circuit's continuous-time solution; the Richardson extrapolation
2 g(16) - g(8) cancels that first-order term and leaves ngspice's own error (the same-path test's
reference, tests/test_circuit_sleep.py). With ``--stationary K`` it also
estimates the circuit's expected update over K seeds in the stationary regime of
tests/test_circuit_sleep.py (T = 1 τ_u, τ_A = 0.05, α = 4, k_p = 0.3) with the model as a
control variate, and compares it and the model's own Monte-Carlo mean with the closed form
(learning.sleep_expected).

Ends with ``RESULT angle_deg=<worst angle to the extrapolated model> rel=<worst relative error
to it> circuit_s=<seconds per circuit sleep phase>``.

    python bench/circuit_sleep.py [--seeds 4] [--stationary 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog.circuit.learning import sleep_noise, sleep_phase  # noqa: E402
from dfc_analog.learning import update_angle  # noqa: E402
from dfc_analog.learning.sleep import SleepParams  # noqa: E402
from tests.test_circuit_sleep import (extrapolated_model, refined_model,  # noqa: E402
                                      stationary_expectation)
from tests.test_spice import toy  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--stationary", type=int, default=0, metavar="K",
                    help="circuit seeds of the stationary expectation check (0: skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, x, _ = toy()
    p = SleepParams()
    refinements = (1, 4, 16, 64)
    print(f"toy net {net.layer_sizes}, sleep phase T = {p.steps * p.dt:g} tau_u in {p.steps} "
          f"steps of {p.dt:g}; circuit vs feedback_update on the same path at dt/m")
    print("seed  circuit s  " + "  ".join(f"m={m}: angle°, rel" for m in refinements)
          + "  2g(16)-g(8): angle°, rel")
    seconds, worst = [], (0.0, 0.0)
    for seed in range(args.seeds):
        xi = sleep_noise(p, net.layer_sizes, seed, 0)
        t0 = time.perf_counter()
        phase = sleep_phase(net, x[0], p, xi)
        seconds.append(time.perf_counter() - t0)
        gaps = [update_angle(refined_model(net, x, p, xi, m), phase.update) for m in refinements]
        gaps.append(update_angle(extrapolated_model(net, x, p, xi), phase.update))
        worst = (max(worst[0], gaps[-1][0]), max(worst[1], gaps[-1][1]))
        print(f"{seed:4d}  {seconds[-1]:9.2f}  " + "  ".join(f"{a:8.4f}, {r:.2e}" for a, r in gaps))
    if args.stationary:
        estimate, se, _, model, expected = stationary_expectation(net, x, args.stationary)
        scale = float(expected.norm())
        print(f"stationary regime, {args.stationary} circuit seeds + {model.shape[0]} groups of "
              f"model paths: |E_circuit - closed form| / |closed form| = "
              f"{float((estimate - expected).norm()) / scale:.4f} (standard error "
              f"{float(se.norm()) / scale:.4f}); the model's mean: "
              f"{float((model.mean(0) - expected).norm()) / scale:.4f}")
    print(f"RESULT angle_deg={worst[0]:.4g} rel={worst[1]:.3g} "
          f"circuit_s={sum(seconds) / len(seconds):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
