"""Single-phase operation on the circuit against the model's: the toy net's forward and feedback
updates (eqs. 5 and 13 on the high-passed control) integrated by the circuit in one phase,
driven by the same noise path as the model.

Toy net 15-10-10-5 (tests/test_spice.toy), the run defaults' single phase (SinglePhaseParams():
T = 5 τ_u in 1,000 Euler–Maruyama steps of Δt = 0.005, τ_v = 0.2, τ_A = 0.3, τ_hp = 1,
σ = σ_L = 0.01; ``--t-end``, ``--dt``, ``--tau-hp`` change them). For each of ``--seeds`` paths of
the seed stream 'single_phase_circuit' the circuit (circuit.learning.single_phase, PWL noise)
is compared with single_phase_update driven by the zero-order hold of the same draws at Δt/m,
m = 1 (the model's own step), 4, 16: the gap shrinks as 1/m, the model's Euler–Maruyama error,
to the circuit's continuous-time solution; the Richardson extrapolation 2 g(16) - g(8) cancels
that first-order term and leaves ngspice's own error (tests/test_circuit_single_phase.py).
Then, without noise, the single phase's ΔW against the two-phase circuit wake's
(circuit.learning.learning_phase) of the same controller and T, whose run time is the baseline
of the circuit's.

Ends with ``RESULT angle_W_deg=<worst ΔW angle to the extrapolated model> rel_W=<worst relative
error> angle_Q_deg=<the same for ΔQ> rel_Q=<...> circuit_s=<seconds per circuit single phase>``.

    python bench/circuit_single_phase.py [--seeds 4] [--t-end 5] [--dt 0.005] [--tau-hp 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog.circuit.graph import CircuitSinglePhase  # noqa: E402
from dfc_analog.circuit.learning import (learning_phase, single_phase,  # noqa: E402
                                         single_phase_noise)
from dfc_analog.learning import ForwardSettings, update_angle  # noqa: E402
from dfc_analog.learning.single_phase import SinglePhaseParams  # noqa: E402
from tests.test_circuit_single_phase import extrapolated, refined_model  # noqa: E402
from tests.test_circuit_sleep import flat  # noqa: E402
from tests.test_spice import toy  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = SinglePhaseParams()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--t-end", type=float, default=d.t_end, help="phase length T in τ_u")
    ap.add_argument("--dt", type=float, default=d.dt, help="the model's Euler–Maruyama step")
    ap.add_argument("--tau-hp", type=float, default=d.tau_hp, help="high-pass τ_hp in τ_u")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, x, y = toy()
    p = dataclasses.replace(d, t_end=args.t_end, dt=args.dt, tau_hp=args.tau_hp)
    T = p.steps * p.dt
    refinements = (1, 4, 8, 16)
    print(f"toy net {net.layer_sizes}, single phase T = {T:g} tau_u in {p.steps} steps of "
          f"{p.dt:g}, tau_v = {p.tau_v:g}, tau_A = {p.tau_a:g}, tau_hp = {p.tau_hp:g}, "
          f"sigma = {p.sigma:g}; circuit vs single_phase_update on the same path at dt/m")
    print("seed  update  circuit s  " + "  ".join(f"m={m}: angle°, rel" for m in (1, 4, 16))
          + "  2g(16)-g(8): angle°, rel")
    seconds, worst = [], {"W": (0.0, 0.0), "Q": (0.0, 0.0)}
    for seed in range(args.seeds):
        xi = single_phase_noise(p, net.layer_sizes, seed, 0)
        t0 = time.perf_counter()
        run = single_phase(net, x[0], y[0], p, xi)
        seconds.append(time.perf_counter() - t0)
        models = {m: refined_model(net, x, y, p, xi, m) for m in refinements}
        best = extrapolated(models)
        for k, (name, got) in enumerate((("W", run.update), ("Q", run.feedback_update))):
            got = flat(got)
            gaps = [update_angle(models[m][k], got) for m in (1, 4, 16)]
            gaps.append(update_angle(best[k], got))
            worst[name] = tuple(max(a, b) for a, b in zip(worst[name], gaps[-1]))
            print(f"{seed:4d}  d{name:5s}  {seconds[-1]:9.2f}  "
                  + "  ".join(f"{a:8.4f}, {r:.2e}" for a, r in gaps))
    quiet = dataclasses.replace(p, sigma=0.0, sigma_output=0.0)
    run = single_phase(net, x[0], y[0], quiet, np.zeros((p.steps, sum(net.layer_sizes[1:]))))
    settings = ForwardSettings(params=CircuitSinglePhase(quiet).controller(), t_end=T,
                               target_stepsize=p.target_stepsize)
    t0 = time.perf_counter()
    wake = learning_phase(net, x[0], y[0], settings, np.array([0.0, T]))
    wake_s = time.perf_counter() - t0
    angle, rel = update_angle(run.update, wake.update)
    print(f"sigma = 0: single-phase circuit dW vs two-phase circuit wake dW: angle {angle:.4g}°, "
          f"relative error {rel:.3g}")
    print(f"one two-phase circuit wake phase of the same T: {wake_s:.3g} s; the single phase "
          f"with noise takes {sum(seconds) / len(seconds) / wake_s:.3g} times that")
    print(f"RESULT angle_W_deg={worst['W'][0]:.4g} rel_W={worst['W'][1]:.3g} "
          f"angle_Q_deg={worst['Q'][0]:.4g} rel_Q={worst['Q'][1]:.3g} "
          f"circuit_s={sum(seconds) / len(seconds):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
