"""The hardware emulation's wake phase by dopri5 and by rosenbrock.

For 15-10-10-5 and 784-256-256-256-10 on ``pcm`` (the problem of ``bench/hardware.py``: seed 0,
0.5 V per unit, 1 µs per τ_u, the authors' MNIST controller), the wake phase of T τ_u of the
realised circuit (:class:`dfc_analog.model.hardware.HardwareModel`) by Dormand–Prince and by the
Rosenbrock-W method with the circuit's exact Jacobian (:class:`HardwareJacobian`), at
rtol = atol = 1e-4 and 1e-6 (model units): accepted steps, evaluations of f, wall seconds, and
the largest error against dopri5 at ``--reference-tol`` normalised by each signal group's range
(dfc-validate's metric). Ends with ``RESULT speedup=<dopri5 s / rosenbrock s at 1e-4, the last
network> steps_ratio=<...>``.

    .venv/bin/python bench/emulation_solvers.py [--t-end T] [--small-only]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hardware import TIME_SCALE, V_SCALE, problem  # noqa: E402

from dfc_analog.solvers.dormand_prince import dormand_prince  # noqa: E402
from dfc_analog.solvers.rosenbrock import rosenbrock_w  # noqa: E402
from dfc_analog.validation.compare import signal_groups  # noqa: E402

TOLERANCES = (1e-4, 1e-6)


def solve(model, x, r_star, t_end: float, method: str, tol: float) -> dict:
    dyn = model.dynamics(x, r_star)
    y0 = model.feedforward(x)["state"]
    times = torch.linspace(0.0, t_end, 101, dtype=torch.float64)
    steps = []
    start = time.perf_counter()
    with torch.no_grad():
        if method == "dopri5":
            states = dormand_prince(dyn, y0, times.tolist(), tol, tol, 10 ** 7,
                                    lambda *s: steps.append(1))
        else:
            states = rosenbrock_w(dyn, dyn.stiff_part, y0, times.tolist(), tol, tol, 10 ** 7,
                                  lambda *s: steps.append(1))
    seconds = time.perf_counter() - start
    return {"steps": len(steps), "nfe": dyn.nfe, "s": seconds,
            "groups": signal_groups(dyn.trajectory(times, states))}


def error(groups: dict, reference: dict) -> float:
    return max(float(abs(groups[n] - r).max()) / max(float(r.max() - r.min()), 1e-12)
               for n, r in reference.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-end", type=float, default=5.0, help="wake phase in τ_u (default 5)")
    parser.add_argument("--reference-tol", type=float, default=1e-9,
                        help="rtol = atol of the dopri5 reference (default 1e-9)")
    parser.add_argument("--small-only", action="store_true", help="only 15-10-10-5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: shared, {torch.get_num_threads()} torch threads; pcm preset, v_scale "
          f"{V_SCALE} V, {TIME_SCALE:g} s per τ_u, wake phase {args.t_end:g} τ_u")
    for sizes in ([15, 10, 10, 5],) + (() if args.small_only else ([784, 256, 256, 256, 10],)):
        _, model, x, r_star, _ = problem(sizes)
        ref = solve(model, x, r_star, args.t_end, "dopri5", args.reference_tol)
        print(f"\n{'-'.join(map(str, sizes))}: reference dopri5 at {args.reference_tol:g}: "
              f"{ref['steps']} steps, {ref['s']:.2f} s")
        print("| solver | rtol = atol | steps | f evaluations | wall s | max error / range |")
        print("| --- | --- | --- | --- | --- | --- |")
        runs = {}
        for tol in TOLERANCES:
            for method in ("dopri5", "rosenbrock"):
                r = runs[method, tol] = solve(model, x, r_star, args.t_end, method, tol)
                print(f"| {method} | {tol:g} | {r['steps']} | {r['nfe']} | {r['s']:.2f} | "
                      f"{error(r['groups'], ref['groups']):.2g} |")
    d, r = runs["dopri5", TOLERANCES[0]], runs["rosenbrock", TOLERANCES[0]]
    print(f"RESULT speedup={d['s'] / r['s']:.2f} steps_ratio={d['steps'] / r['steps']:.1f}")


if __name__ == "__main__":
    main()
