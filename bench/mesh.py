"""The crossbar wires of 784-256-256-256-10 solved once per realisation, and what each consumer
then pays.

For ``pcm-wires`` (each tile column a ladder) and ``pcm-mesh`` (each 512-cell by 256-column tile
a 2-D mesh), random Xavier weights realised with seed 0 at 0.5 V per unit, it prints the time of
the first :func:`~dfc_analog.hardware.wires.wired_layers` (the solve), of a second call, and of
the consumers that each solved the wires again before the solutions were cached: the emulation
(``HardwareModel``), the crossbar netlist (feed-forward phase), the deployment fold of the same
devices, the energy model's tile ports (on a mesh with the drivers' admittance, a solve of its
own, once) and, for the same devices with a read-noise process (``read_interval`` 250 ns), the
solve with the devices' read-noise gains h (on a mesh a second pass of each tile), the
emulation after it, and the range of h per layer. It ends with
``RESULT mesh_solve_s=<cold pcm-mesh solve> mesh_consumers_s=<the consumers after it>``.

    .venv/bin/python bench/mesh.py [--threads N] [--wires-only]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.hardware.batch import stack_of
from dfc_analog.hardware.wires import driver_ports, wired_layers
from dfc_analog.model.deployment import fold
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork

SIZES = [784, 256, 256, 256, 10]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(preset: str) -> dict:
    net = DFCNetwork(SIZES, ["tanh"] * 3 + ["linear"], dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    spec = load_spec(preset)
    real = realise_network(net, spec, 0, 0.5)
    params = ControllerParams()
    x = np.zeros(SIZES[0])
    out = {"solve": timed(lambda: wired_layers(real)), "again": timed(lambda: wired_layers(real))}
    out["emulation"] = timed(lambda: HardwareModel(real, params))
    out["netlist"] = timed(lambda: write_crossbar_netlist(real, params, x, phase="feedforward"))
    out["deployment"] = timed(lambda: fold(stack_of(real)))
    out["energy ports"] = timed(lambda: [driver_ports(lr, spec) for lr in real.layers]) \
        if spec.synapse.row_wire_resistance > 0 else 0.0
    noisy = dataclasses.replace(spec, synapse=dataclasses.replace(spec.synapse,
                                                                  read_interval=250e-9))
    with_noise = realise_network(net, noisy, 0, 0.5)
    out["with read noise: solve"] = timed(lambda: wired_layers(with_noise))
    out["its emulation"] = timed(lambda: HardwareModel(with_noise, params))
    gains = []
    for w, lr in zip(wired_layers(with_noise), with_noise.layers):
        h = torch.cat([(a / b)[b > 0] for a, b in zip(w.layer.read_sigma, lr.read_sigma)])
        gains.append(f"{float(h.min()):.3f}..{float(h.max()):.3f}")
    return out, gains


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--wires-only", action="store_true", help="pcm-wires only (fast)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: shared, {torch.get_num_threads()} torch threads; "
          f"{'-'.join(map(str, SIZES))}, seed 0, 0.5 V per unit")
    results = {}
    for preset in ("pcm-wires",) + (() if args.wires_only else ("pcm-mesh",)):
        r, gains = bench(preset)
        results[preset] = r
        print(f"{preset}: " + ", ".join(f"{k} {v:.2f} s" for k, v in r.items()))
        print(f"  read-noise gain h per layer: {', '.join(gains)}")
    if "pcm-mesh" in results:
        r = results["pcm-mesh"]
        consumers = r["again"] + r["emulation"] + r["netlist"] + r["deployment"]
        print(f"RESULT mesh_solve_s={r['solve']:.1f} mesh_consumers_s={consumers:.2f}")


if __name__ == "__main__":
    main()
