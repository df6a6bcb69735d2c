"""``dfc-export`` (``python -m dfc_analog.export``): a trained run → component graph and a
standalone ngspice netlist of one experiment on one input sample.

    dfc-export --netlist out.cir runs/student-teacher-dfc-seed42            # wake phase, test[0]
    dfc-export --netlist op.cir --phase op --sample 7 --split val RUN_DIR
    dfc-export --netlist x.cir --sample x.npy --target rstar.npy RUN_DIR
    dfc-export --graph graph.json RUN_DIR                                  # the graph only
    dfc-export --netlist learn.cir --target circuit --plasticity circuit RUN_DIR
    dfc-export --netlist sleep.cir --phase sleep --plasticity circuit --noise-seed 3 RUN_DIR
    dfc-export --netlist one.cir --phase single-phase --plasticity circuit --noise-seed 3 RUN_DIR

The wake-phase target is r* = r_L^- + δ of eq. (3), with δ from
:func:`dfc_analog.learning.output_target` for a minibatch of this one sample under the run's
loss, loss_reduction and λ; r_L^- is the network's feed-forward output (eq. 2), which the
circuit's own DC operating point reproduces to ngspice's tolerance. It is written into the
netlist as numbers, so ``ngspice -b OUT.cir`` runs the file unchanged. With ``--target
circuit`` the circuit forms r* itself instead (a track-and-hold of r_L^- and the label as a
source, :class:`dfc_analog.circuit.graph.CircuitTarget`), and with ``--plasticity circuit`` it
integrates eq. (5) on one capacitor per forward synapse and bias
(:class:`dfc_analog.circuit.graph.CircuitPlasticity`): then no number the software computed
enters the netlist except x, y and the weights.

``--phase sleep`` writes the sleep phase of §5 (eqs. 12-13, the run's sleep constants:
:class:`dfc_analog.circuit.graph.CircuitSleep`): the circuit holds r* = r_L^- itself, the apical
compartments filter the noise of eq. (12), a Wiener path played by PWL sources from the seed
stream ``sleep_circuit`` (``--noise-seed``; the path ``feedback_update`` follows with that
stream's generator) or ngspice's unseeded TRNOISE (``--trnoise``), and with ``--plasticity
circuit`` one integrator capacitor per feedback synapse accumulates eq. (13)'s -v_A uᵀ
(:func:`dfc_analog.circuit.learning.read_feedback_update` reads them).

``--phase single-phase`` writes single-phase operation (paper §7, App. C.3; the run's wake
dynamics, step_size, σ, σ_L, τ_A and τ_hp: :class:`dfc_analog.circuit.graph.CircuitSinglePhase`):
the circuit forms its own target of eq. (3) from its held output and the sample's label, the
noise of eq. (12) (``--noise-seed``: the stream ``single_phase_circuit``, the path
``single_phase_update`` follows with that stream's generator; or ``--trnoise``) is low-passed
by τ_A into the apical sums, and with ``--plasticity circuit`` both integrator banks run at
once: eq. (5) per forward synapse and eq. (13) on the RC high-pass of u per feedback synapse.
"""
from __future__ import annotations

if __name__ == "__main__":
    from dfc_analog.cli import quiet_startup
    quiet_startup()

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from dfc_analog import cli, runio
from dfc_analog.data import load_dataset
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import DFCError
from dfc_analog.circuit.crossbar import hardware_summary, write_crossbar_netlist
from dfc_analog.hardware import load_spec, preset_names, realise_network
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.circuit.graph import (CircuitPlasticity, CircuitTarget, add_scaling_arguments,
                                      build_graph, save_graph, scaling_from_args,
                                      single_phase_graph, sleep_graph, summary)
from dfc_analog.circuit.learning import single_phase_noise, sleep_noise
from dfc_analog.learning.single_phase import SinglePhaseParams
from dfc_analog.learning.sleep import SleepParams
from dfc_analog.learning.targets import output_target, target_gain
from dfc_analog.runio import atomic_write, load_run, refuse_overwriting_inputs
from dfc_analog.circuit.netlist import (PHASES, add_spice_arguments, output_times, spice_options,
                                        write_netlist)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "export",
        description="Export a trained DFC run as a component graph (networkx node-link JSON) "
                    "and/or a standalone ngspice netlist of one experiment on one input sample. "
                    "Times are in units of the controller time constant τ_u; t = 0 is the "
                    "moment the controller switches on.",
        epilog=f"example: {cli.prog('export')} --netlist wake.cir --sample 3 "
               "runs/student-teacher-dfc-seed42")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by dfc-train")
    out = p.add_argument_group("outputs (at least one)")
    out.add_argument("--netlist", metavar="OUT.cir", help="write the ngspice netlist here")
    out.add_argument("--graph", metavar="OUT.json", help="write the component graph here "
                     "(networkx node-link JSON; dfc_analog.circuit.graph.load_graph reads it)")
    exp = p.add_argument_group("experiment")
    exp.add_argument("--sample", default="0", metavar="INDEX|FILE.npy",
                     help="input x: an index into the run's dataset split (see --split), or an "
                          ".npy file holding one vector of n_0 values (default: 0)")
    exp.add_argument("--split", default="test", choices=("train", "val", "test"),
                     help="dataset split that --sample indexes (default: test)")
    exp.add_argument("--data-dir", metavar="DIR",
                     help="folder with the IDX files, if not where the run found them (e.g. "
                          "after moving the run to another machine; default: the run's "
                          "data_dir)")
    exp.add_argument("--target", metavar="FILE.npy|circuit",
                     help="output target r* (n_L values) instead of eq. (3) from the sample's "
                          "label; needed for the wake phase when --sample is an .npy file; "
                          "'circuit': the circuit forms eq. (3) itself from a track-and-hold of "
                          "its output and the label as a source")
    exp.add_argument("--plasticity", default="software", choices=("software", "circuit"),
                     help="'circuit': one integrator capacitor per forward synapse and bias "
                          "accumulates eq. (5) over the wake phase, V = v_scale (1/T) ∫ Δ r dt, "
                          "or, in the sleep phase, one per feedback synapse eq. (13)'s -v_A uᵀ, "
                          "V = -v_scale (1/T) ∫ v_A u dt / σ̂², and in the single phase both, "
                          "eq. (13) on the high-passed u (default: software, which reads the "
                          "update off the trajectory)")
    exp.add_argument("--phase", default="wake", choices=PHASES,
                     help="'op': DC operating point only (the feed-forward equilibrium, eq. 2); "
                          "'feedforward': transient with the controller off; 'wake': settle "
                          "with the controller off, then switch it on with target r* (eq. 3); "
                          "'sleep': settle, then the controller on with the held target "
                          "r* = r_L^- and the noise of eq. (12) in the apical compartments, "
                          "with the run's sleep constants; 'single-phase': the wake phase with "
                          "the circuit's own target, the noise of eq. (12) low-passed by τ_A in "
                          "the apical compartments and both plasticities on (App. C.3), with "
                          "the run's wake constants, step_size and τ_hp (default: wake)")
    exp.add_argument("--noise-seed", type=int, metavar="S",
                     help="sleep or single phase: the noise path is draw (S, sample index) of "
                          "the seed stream 'sleep_circuit' ('single_phase_circuit'), written as "
                          "PWL sources (default: 0)")
    exp.add_argument("--trnoise", action="store_true",
                     help="sleep or single phase: ngspice's own TRNOISE sources instead of a "
                          "seeded path "
                          "(ngspice 39 cannot seed them: each run draws its own path)")
    exp.add_argument("--t-end", type=float, metavar="T",
                     help="simulated time after the switch-on, in τ_u (default: the run's t_end; "
                          "the sleep phase: t_end_fb, rounded to whole steps of dt_fb; the single "
                          "phase: t_end, rounded to whole steps of step_size)")
    exp.add_argument("--step", type=float, metavar="DT",
                     help="output time step in τ_u; the simulator lands exactly on each output "
                          "time (default: t_end / 100)")
    exp.add_argument("--settle", type=float, default=1.0, metavar="T0",
                     help="settling time with the controller off before t = 0, in τ_u "
                          "(default: 1)")
    hw = p.add_argument_group("hardware")
    hw.add_argument("--hardware", metavar="NAME|FILE.toml",
                    help="write the crossbar netlist of a hardware realisation: conductance "
                         "pairs, one-pole op-amps, differential-pair activations, supplies; a "
                         "preset (" + ", ".join(preset_names()) + ") or a TOML file with "
                         "[hardware] tables (default, or 'ideal': the ideal netlist)")
    hw.add_argument("--hardware-seed", type=int, default=0, metavar="S",
                    help="seed of the realisation's device draws (default 0)")
    add_scaling_arguments(p.add_argument_group("physical scaling"))
    sim = p.add_argument_group("simulator options (written as .options into the netlist)")
    add_spice_arguments(sim)
    sim.add_argument("--each-input-synapse", action="store_true",
                     help="write one current source per layer-1 synapse on the constant input "
                          "(default: one summed source per layer-1 neuron, exact and faster)")
    return p


def _load_vector(path: str, n: int, what: str) -> np.ndarray:
    """The n real, finite values of an .npy file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DFCError(f"cannot read {what} file '{path}': {exc.strerror or exc}.") from None
    except (ValueError, EOFError):
        raise DFCError(f"cannot read {what} file '{path}': it is damaged or holds Python "
                       "objects, not an .npy array of numbers.") from None
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.integer) or
                                               np.issubdtype(arr.dtype, np.floating)):
        kind = getattr(arr, "dtype", type(arr).__name__)
        raise DFCError(f"{what} file '{path}' must hold real numbers, not {kind}.")
    if np.ndim(arr) > 2 or np.size(arr) != n:
        raise DFCError(f"{what} file '{path}' must hold {n} values for this network, got shape "
                       f"{arr.shape}.")
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise DFCError(f"{what} file '{path}' holds NaN or infinite values.")
    return arr


def experiment(cfg, net, sample: str, split: str, target: str | None, phase: str,
               hardware=None):
    """(x, r*) of the experiment: the input sample and the output target of eq. (3), from the
    network's feed-forward output or, with ``hardware`` (a HardwareModel), from the realised
    circuit's own."""
    n_0, n_L = cfg.layer_sizes[0], cfg.layer_sizes[-1]
    label = None
    if sample.endswith(".npy"):
        x = _load_vector(sample, n_0, "input")
    else:
        try:
            index = int(sample)
        except ValueError:
            raise DFCError(f"--sample must be an index or an .npy file, got '{sample}'.") from None
        data = getattr(load_dataset(cfg), split)
        if not 0 <= index < len(data):
            raise DFCError(f"sample index {index} is out of range: the {split} split holds "
                           f"{len(data)} samples (0..{len(data) - 1}).")
        x = data.x[index].detach().double().numpy()
        label = data.y[index:index + 1]
    if phase != "wake":
        return x, None
    if target is not None:
        return x, _load_vector(target, n_L, "target")
    if label is None:
        raise DFCError("an .npy input carries no label: give the wake-phase target r* with "
                       "--target FILE.npy.")
    with torch.no_grad():
        x_b = torch.as_tensor(x)[None]
        r_L = net.feedforward(x_b)[1][-1] if hardware is None else \
            hardware.feedforward(x_b)["rate"][:, -cfg.layer_sizes[-1]:]
        y = label.double() if label.is_floating_point() else label
        r_star, _ = output_target(r_L, y, cfg.loss, cfg.loss_reduction, cfg.target_stepsize)
    return x, r_star[0].numpy()


@cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.netlist or args.graph):
        raise DFCError("nothing to write: give --netlist OUT.cir and/or --graph OUT.json.")
    run = Path(args.run_dir)
    inputs = [run / name for name in runio.RUN_FILES] + [
        p for p in (args.sample, args.target) if p and p.endswith(".npy")]
    refuse_overwriting_inputs({"--netlist": args.netlist, "--graph": args.graph}, inputs)
    cli.set_threads(args.threads)
    cfg, net = load_run(run, device="cpu")
    if args.data_dir is not None:
        cfg = cfg.replace(data_dir=os.path.abspath(args.data_dir))
    net = net.double()
    in_circuit = args.target == "circuit"
    sleep, single = args.phase == "sleep", args.phase == "single-phase"
    if sleep and args.target is not None:
        raise DFCError("the sleep phase's target is the circuit's own held output, "
                       "r* = r_L^-: leave out --target.")
    if single and args.target is not None:
        raise DFCError("the single phase's target is the circuit's own, eq. (3) from its held "
                       "output and the label: leave out --target.")
    if single and args.sample.endswith(".npy"):
        raise DFCError("the single phase forms its target from the sample's label: give "
                       "--sample as an index into the run's dataset, not an .npy file.")
    if in_circuit and args.phase != "wake" or \
            args.plasticity == "circuit" and args.phase not in ("wake", "sleep", "single-phase"):
        raise DFCError("--target circuit and --plasticity circuit describe the wake phase "
                       "(--plasticity circuit also the sleep and the single phase): give "
                       "--phase wake, sleep or single-phase.")
    if (sleep or single) and args.t_end is not None and \
            not (args.t_end > 0 and math.isfinite(args.t_end)):
        raise DFCError(f"--t-end must be a positive number of tau_u, got {args.t_end}.")
    if (args.noise_seed is not None or args.trnoise) and not (sleep or single):
        raise DFCError("--noise-seed and --trnoise set the noise of eq. (12): give --phase "
                       "sleep or --phase single-phase.")
    if args.noise_seed is not None and args.trnoise:
        raise DFCError("give either --noise-seed (a seeded path) or --trnoise (ngspice's "
                       "unseeded noise), not both.")
    if (in_circuit or args.plasticity == "circuit" or sleep or single) and args.hardware:
        raise DFCError("the circuit's own target and plasticity and the sleep and single phases "
                       "are in the ideal netlist only; leave out --hardware.")
    x, r_star = experiment(cfg, net, args.sample, args.split,
                           None if in_circuit else args.target, args.phase)
    scaling = scaling_from_args(args)
    options = spice_options(args, sum_inputs=not args.each_input_synapse)
    noisy = SleepParams.from_config(cfg) if sleep else \
        SinglePhaseParams.from_config(cfg) if single else None
    if noisy is not None and args.t_end is not None:
        noisy = dataclasses.replace(noisy, t_end=args.t_end)
    t_end = noisy.steps * noisy.dt if noisy is not None else \
        args.t_end if args.t_end is not None else cfg.t_end
    times = output_times(t_end, args.step if args.step is not None else t_end / 100) \
        if args.phase != "op" else None
    params = ControllerParams.from_config(cfg)
    spec = load_spec(args.hardware) if args.hardware else None
    if spec is not None and not spec.is_ideal:
        if args.graph:
            raise DFCError("--graph writes the ideal component graph; leave out --hardware "
                           "or --graph.")
        real = realise_network(net, spec, args.hardware_seed, scaling.v_scale,
                               scaling.resistance)
        model = HardwareModel(real, params, scaling.time_scale)
        with torch.no_grad():
            model.feedforward(torch.as_tensor(x)[None])     # the rails must not clip it
            if args.phase == "wake" and args.target is None:
                _, r_star = experiment(cfg, net, args.sample, args.split, None, args.phase,
                                       model)
        text = write_crossbar_netlist(real, params, x, r_star, args.phase, t_end, times,
                                      args.settle, options, scaling.time_scale)
        atomic_write(Path(args.netlist), text.encode())
        print(hardware_summary(real, text))
        print(f"wrote netlist {args.netlist}")
        return 0
    learning = {}
    if in_circuit:
        split = getattr(load_dataset(cfg), args.split)
        index = int(args.sample)
        learning.update(label=split.y[index:index + 1], target=CircuitTarget(
            cfg.loss, target_gain(cfg.loss, cfg.loss_reduction, cfg.target_stepsize, 1,
                                  cfg.layer_sizes[-1])))
        r_star = None
    if args.plasticity == "circuit":
        learning["plasticity"] = CircuitPlasticity(cfg.plasticity, t_end)
    noise = None
    if sleep:
        g = sleep_graph(net, noisy, scaling, x, args.plasticity == "circuit")
    elif single:
        label = getattr(load_dataset(cfg), args.split).y[int(args.sample)]
        g = single_phase_graph(net, noisy, scaling, x, label, 1, args.plasticity == "circuit")
    if noisy is not None and not args.trnoise:
        sample = 0 if args.sample.endswith(".npy") else int(args.sample)
        draw = sleep_noise if sleep else single_phase_noise
        noise = draw(noisy, cfg.layer_sizes, args.noise_seed or 0, sample)[:, 0]
    if noisy is None:
        g = build_graph(net, params, scaling, x, r_star, **learning)
    if args.netlist:
        atomic_write(Path(args.netlist), write_netlist(g, args.phase, t_end, times, args.settle,
                                                       options, noise).encode())
    if args.graph:
        save_graph(g, args.graph)
    print(summary(g))
    for what, path in (("netlist", args.netlist), ("graph", args.graph)):
        if path:
            print(f"wrote {what} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
