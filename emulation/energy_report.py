"""Energy, latency and device spread of a network on each hardware preset.

For a run folder (default: a freshly initialised 15-10-10-5 network) and its first test input,
on every preset with real amplifiers (pcm, rram, 4bit, 8bit): the energy per inference (an
input step, until the outputs settle within 1 %) from ngspice and from the model's estimate,
in J and fJ per MAC, with its breakdown; the conductance histogram of each layer; and the spread
of the settled outputs over realisations (device draws of seeds 0..N-1, emulation).

    .venv/bin/python emulation/energy_report.py [RUN_DIR] [--out DIR] [--seeds N] [--window T]
                                                [--v-scale V] [--by-layers]

``--by-layers`` simulates the inference in one ngspice run per layer, each driven by the
previous layer's waveforms (exact, as the op-amps' outputs are ideal sources): the way to a
784-256-256-256-10 network, whose whole circuit ngspice takes hours to solve, in minutes.

Writes energy.md, energy_breakdown.png, conductances_<preset>.png and inference_<preset>.png
(the inference in volts over µs, circuit solid, emulation dashed) into DIR (default
emulation/out/energy).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from dfc_analog.circuit.energy import circuit_energy, energy_by_layers, model_energy
from dfc_analog.circuit.graph import Scaling
from dfc_analog.circuit.simulate import hardware_trajectory, simulate_inference_by_layers
from dfc_analog.data import load_dataset
from dfc_analog.errors import DFCError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork
from dfc_analog.runio import atomic_write, load_run, save_figure
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation.compare import ValidationSettings, compare, largest_error
from dfc_analog.validation.hardware_plots import (conductance_histograms, energy_breakdown,
                                                  overlay_volts)

PRESETS = ("pcm", "rram", "4bit", "8bit")
TIME_SCALE = 1e-6


def network(run_dir):
    if run_dir is None:
        net = DFCNetwork([15, 10, 10, 5], ["tanh", "tanh", "linear"], dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
        x = torch.linspace(-0.9, 0.8, 15, dtype=torch.float64)
        return net, ControllerParams(), x, "a 15-10-10-5 network (Xavier weights, seed 0)"
    cfg, net = load_run(run_dir, device="cpu")
    x = load_dataset(cfg).test.x[0].double()
    return net.double(), ControllerParams.from_config(cfg), x, f"run `{run_dir}`, test sample 0"


def model_side(net, spec, params, x, window: float, times, v_scale: float, seeds: int) -> dict:
    """The emulation of one preset (seed 0): its energy estimate and its inference from rest,
    and the spread of the settled outputs over the device draws of ``seeds`` realisations;
    raises the rails' one-sentence error before any ngspice run."""
    real = realise_network(net, spec, 0, v_scale)
    emulation = simulate_hardware_wake(HardwareModel(real, params, TIME_SCALE), x[None], None,
                                       window, torch.as_tensor(times), 1e-9, 1e-9,
                                       from_rest=True)
    model = model_energy(real, params, x.numpy(), None, window, times, TIME_SCALE)
    outputs = torch.stack([
        HardwareModel(realise_network(net, spec, s, v_scale), params, TIME_SCALE)
        .feedforward(x[None])["rate"][0, -net.layer_sizes[-1]:] for s in range(seeds)])
    ideal = net.feedforward(x[None])[1][-1][0].detach()
    return {"real": real, "emulation": emulation, "model": model,
            "spread": float(outputs.std(0).mean()),
            "bias": float((outputs.mean(0) - ideal).abs().mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="run folder (default: a fresh toy network)")
    parser.add_argument("--out", default="emulation/out/energy",
                        help="folder for energy.md and the figures (default emulation/out/energy)")
    parser.add_argument("--seeds", type=int, default=8,
                        help="realisations (device draws) for the spread (default 8)")
    parser.add_argument("--window", type=float, default=3.0,
                        help="simulated time after the input step, in µs (τ_u; default 3: the "
                             "toy network settles in 2; 784-256-256-256-10 needs about 5)")
    parser.add_argument("--v-scale", type=float, default=0.5,
                        help="volts per model unit (default 0.5); a trained MNIST network's "
                             "somas reach some 20 units and need about 0.05 V within the "
                             "±1.4 V rails")
    parser.add_argument("--by-layers", action="store_true",
                        help="simulate the inference in one ngspice run per layer (for large "
                             "networks: minutes where the whole circuit takes hours)")
    args = parser.parse_args(argv)
    if not args.window > 0:
        parser.error("--window must be a positive time in µs.")
    if not args.v_scale > 0:
        parser.error("--v-scale must be a positive voltage.")
    if args.seeds < 2:
        parser.error("--seeds must be at least 2: a spread needs two realisations.")
    window, v_scale = args.window, args.v_scale
    try:
        net, params, x, what = network(args.run_dir)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        times = np.linspace(0.0, window, int(100 * window) + 1)
        settings = ValidationSettings(phase="feedforward", scaling=Scaling(TIME_SCALE, v_scale))
        # the model side of every preset first: the rails' check fails before any ngspice run
        sides = {name: model_side(net, load_spec(name), params, x, window, times, v_scale,
                                  args.seeds) for name in PRESETS}
        rows, bars = [], {}
        for name, side in sides.items():
            real, model = side["real"], side["model"]
            if args.by_layers:
                circuit, runs = simulate_inference_by_layers(real, params, x, window, times,
                                                             TIME_SCALE, progress=True)
                circ = energy_by_layers(real, x.numpy(), runs, window, TIME_SCALE)
            else:
                circ, data = circuit_energy(real, params, x.numpy(), None, window, times,
                                            TIME_SCALE)
                circuit = hardware_trajectory(real, data, times, TIME_SCALE, 1.0)
            worst, error = largest_error(compare(side["emulation"], circuit, settings)[0])
            save_figure(out / f"inference_{name}.png", overlay_volts(
                {"circuit": circuit.numpy(), "emulation": side["emulation"].numpy()},
                TIME_SCALE, v_scale, f"inference on '{name}' (colour: neuron)",
                "the input step"), dpi=110)
            bars[f"{name} circuit"], bars[f"{name} model"] = circ, model
            settle = "–" if circ.settling_time is None else f"{circ.settling_time * 1e6:.3g}"
            rows.append(f"| {name} | {error.max:.2g} ({worst}) | {circ.per_inference:.3g} | "
                        f"{circ.per_mac * 1e15:.3g} | {model.per_mac * 1e15:.3g} | "
                        f"{model.per_inference / circ.per_inference:.4f} | "
                        f"{settle} | {circ.crossbar / circ.total:.2%} | "
                        f"{circ.quiescent / circ.total:.1%} | "
                        f"{circ.controller / circ.total:.1%} | {side['spread']:.3g} | "
                        f"{side['bias']:.3g} |")
            save_figure(out / f"conductances_{name}.png", conductance_histograms(real), dpi=110)
        save_figure(out / "energy_breakdown.png", energy_breakdown(bars), dpi=110)
        lines = [f"# Energy per inference of {what}", "",
                 f"Input step at t = 0, window {window:g} µs, {v_scale:g} V per model unit; "
                 "energy until the outputs settle within 1 %. Crossbar, quiescent (the "
                 "network's op-amps) and controller (its op-amps) shares are of the window's "
                 f"energy. Spread: the settled outputs over {args.seeds} realisations (device "
                 "draws), std per output averaged (model units); bias: |mean − ideal|. Circuit "
                 "vs emulation: the largest normalised error of the inference (dfc-validate's "
                 "metric) and its signal group.",
                 "", "| preset | circuit vs emulation | J / inference (circuit) | fJ/MAC circuit | "
                 "fJ/MAC model | model / circuit | settling µs | crossbar | quiescent | "
                 "controller | spread | bias |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                 *rows, ""]
        atomic_write(out / "energy.md", "\n".join(lines).encode())
    except DFCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"wrote {out}/energy.md, energy_breakdown.png, conductances_<preset>.png, "
          f"inference_<preset>.png")
    return 0

if __name__ == "__main__":
    sys.exit(main())
