"""Regenerate the example netlists in this folder (see README.md for what each shows).

    .venv/bin/python netlists/regenerate.py            # rewrite every example
    .venv/bin/python netlists/regenerate.py --check    # exit 1 if an example is out of date

The check skips the header's ``* dfc_analog <version>`` line, so a release does not make the
examples stale.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dfc_analog.config.options import Config
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.export import experiment
from dfc_analog.circuit.graph import Scaling, build_graph
from dfc_analog.model.network import DFCNetwork
from dfc_analog.runio import atomic_write
from dfc_analog.circuit import output_times, write_netlist
from dfc_analog.circuit.netlist import without_version

HERE = Path(__file__).resolve().parent


def one_neuron() -> DFCNetwork:
    """1-1 linear neuron, W = 0.5, b = 0.1, Q = 1: the PI loop with a closed-form solution."""
    net = DFCNetwork([1, 1], ["linear"], dtype=torch.float64)
    with torch.no_grad():
        net.W[0].fill_(0.5)
        net.b[0].fill_(0.1)
    return net


def tiny() -> DFCNetwork:
    """2-3-2 with hand-picked weights: small enough to read every line."""
    net = DFCNetwork([2, 3, 2], ["tanh", "linear"], dtype=torch.float64)
    with torch.no_grad():
        net.W[0].copy_(torch.tensor([[0.5, -0.25], [1.0, 0.0], [-0.75, 2.0]], dtype=torch.float64))
        net.b[0].copy_(torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64))
        net.W[1].copy_(torch.tensor([[1.5, -1.0, 0.25], [0.0, 0.5, 1.0]], dtype=torch.float64))
        net.b[1].copy_(torch.tensor([0.0, 0.05], dtype=torch.float64))
        net.Q[0].copy_(net.W[1].T)
    return net


def examples() -> dict:
    """File name → netlist text."""
    out = {}
    pi = ControllerParams(tau_v=0.2, alpha=0.1, k_p=1.5)
    g = build_graph(one_neuron(), pi, Scaling(), x=[0.3], r_star=[0.45])
    out["pi_loop_1-1_wake.cir"] = write_netlist(g, "wake", 3.0, output_times(3.0, 0.1), 0.5)

    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
    g = build_graph(tiny(), params, Scaling(), x=[0.5, -1.0], r_star=[0.25, -0.5])
    out["tiny_2-3-2_op.cir"] = write_netlist(g, "op")
    out["tiny_2-3-2_wake.cir"] = write_netlist(g, "wake", 5.0, output_times(5.0, 0.1), 1.0)

    cfg = Config.from_dict({"dtype": "float64"})     # the Fig. 3 toy setting, freshly initialised
    net = DFCNetwork.from_config(cfg, torch.Generator().manual_seed(cfg.seed))
    x, r_star = experiment(cfg, net, "0", "test", None, "wake")
    g = build_graph(net, ControllerParams.from_config(cfg), Scaling(), x, r_star)
    out["toy_15-10-10-5_wake.cir"] = write_netlist(g, "wake", cfg.t_end,
                                                   output_times(cfg.t_end, 0.05), 1.0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the files are up to date (exit status 1 if not)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in examples().items():
        path = HERE / name
        if args.check:
            if not path.exists() or without_version(path.read_text()) != without_version(text):
                stale.append(name)
        else:
            atomic_write(path, text.encode())
            print(f"wrote {path.relative_to(HERE.parent)} ({text.count(chr(10))} lines)")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run netlists/regenerate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
