"""Export and simulate the DFC circuit of a small and the MNIST-size network through ngspice.

For 15-10-10-5 and 784-256-256-256-10 (random Xavier weights, feedback Q_i = Π W_kᵀ, the
authors' MNIST DFC controller: τ_v = 0.2, α = 0.001389, k_p = 2, leak 'total') it prints the
time to build the component graph and write the netlist, the netlist size, and the ngspice
time of the DC operating point and of one wake-phase transient (settle 1 τ_u, then T = 20 τ_u
with the controller on, 21 output times), each in a fresh worker process, and checks the
transient's final output against the ODE solver (dopri5, rtol 1e-8).

    .venv/bin/python bench/export_spice.py            # ends with RESULT export_s=... wake_tran_s=...
"""
from __future__ import annotations

import argparse
import time

import torch

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.circuit.graph import Scaling, build_graph
from dfc_analog.learning import output_target
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import SolverSettings, simulate_wake
from dfc_analog.circuit import SpiceOptions, write_netlist
from dfc_analog.circuit.netlist import output_times, saved_nodes
from dfc_analog.circuit.simulate import run_netlist, trajectory_from_vectors

PARAMS = ControllerParams(tau_v=0.2, alpha=0.001389, k_p=2.0, leak="total")
T_END, SETTLE = 20.0, 1.0


def bench(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = DFCNetwork(sizes, ["tanh"] * (len(sizes) - 2) + ["linear"], dtype=torch.float64,
                     generator=gen)
    x = torch.rand(1, sizes[0], generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.randn(1, sizes[-1], generator=gen, dtype=torch.float64)
    _, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.1)
    times = output_times(T_END, 1.0)
    scaling, options = Scaling(), SpiceOptions()

    start = time.perf_counter()
    g = build_graph(net, PARAMS, scaling, x[0], r_star[0])
    wake = write_netlist(g, "wake", T_END, times, SETTLE, options)
    export_s = time.perf_counter() - start
    op = write_netlist(g, "op", options=options)
    names = saved_nodes(g)

    start = time.perf_counter()
    run_netlist(op, names)
    op_s = time.perf_counter() - start
    start = time.perf_counter()
    data = run_netlist(wake, names)
    tran_s = time.perf_counter() - start

    circuit = trajectory_from_vectors(sizes, data, scaling, times, SETTLE * scaling.time_scale)
    ode = simulate_wake(net, x, r_star, PARAMS, SolverSettings("dopri5", 1e-8, 1e-8), T_END,
                        times=torch.as_tensor(times)).trajectory
    span = float(ode.rate[-1].max() - ode.rate[-1].min())
    err = float((circuit.rate[-1] - ode.rate[-1]).abs().max()) / span
    print(f"{'-'.join(map(str, sizes)):>20}  export {export_s:6.2f} s  netlist "
          f"{len(wake) / 2**20:6.2f} MiB, {wake.count(chr(10)):7d} lines, "
          f"{len(data['time']):5d} time points  .op {op_s:6.2f} s  wake transient "
          f"{tran_s:6.2f} s  output error {err:.1e} of its range")
    return export_s, tran_s


def main():
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(f"controller: tau_v {PARAMS.tau_v}, alpha {PARAMS.alpha}, k_p {PARAMS.k_p}, leak "
          f"{PARAMS.leak}; wake phase {SETTLE} + {T_END} tau_u; SPICE {SpiceOptions()}")
    bench([15, 10, 10, 5])
    export_s, tran_s = bench([784, 256, 256, 256, 10])
    print(f"RESULT export_s={export_s:.2f} wake_tran_s={tran_s:.2f}")


if __name__ == "__main__":
    main()
