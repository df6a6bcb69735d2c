"""The network on PCM hardware, in both simulators: export, transients, agreement, energy.

For 15-10-10-5 and 784-256-256-256-10 (random Xavier weights, Q_i = Π W_kᵀ, the authors'
MNIST DFC controller: τ_v = 0.2, α = 0.001389, k_p = 2, leak 'total'; inputs in [0, 1] with
80 % of them zero, like MNIST's pixels), realised on the ``pcm`` preset (seed 0, v_scale
0.5 V, 1 µs per τ_u), it prints

  - the time to realise the devices and write the crossbar netlist, and the netlist's size;
  - the feed-forward operating point (controller off) in ngspice (``.op``) against the
    emulation's feed-forward state: time, the largest rate difference relative to the rates'
    range, and the static power of circuit and model (W);
  - the inference (feed-forward) transient: an input step, 5 τ_u, in ngspice and in the
    emulation: wall time, the largest normalised circuit-vs-emulation error over the signal
    groups (dfc-validate's metric), energy per inference (J, fJ per MAC; circuit and model) and
    the settling time of the outputs within 1 %; on the large network in one ngspice run per
    layer (``simulate_inference_by_layers``, ``energy_by_layers``: the whole circuit did not
    finish in 2 h, README);
  - the wake transient: settle 1 τ_u, then T τ_u with the controller on (eq. 3 target of a
    random class), in ngspice (reltol 1e-4: at 1e-3 the op-amp controller's switch-on leaves
    1.6e-3 of u's range) and in the emulation (dopri5, rtol = atol = 1e-9 in model units):
    wall times and the circuit-vs-emulation error; on the large network in ngspice only with
    ``--large-wake`` (the controller's loop through every layer cannot be cut into runs);

and ends with ``RESULT emul_err=<x> energy_fj_per_mac=<y> energy_model_vs_circuit=<ratio>
wake_tran_s=<z> wake_tran_cpu_s=<c>`` for the last network: emul_err the largest error of the
transients ngspice ran, wake_tran_s nan where it did not run the wake (cpu: the CPU seconds of
the ngspice process, which a busy machine does not inflate as it does the wall time).

    .venv/bin/python bench/hardware.py [--t-end T] [--small-only] [--large-op-only]
                                       [--large-wake] [--emulation-only]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from dfc_analog.circuit.crossbar import saved_vectors, write_crossbar_netlist
from dfc_analog.circuit.energy import (circuit_energy, circuit_power, energy_by_layers,
                                       model_energy, model_power)
from dfc_analog.circuit.graph import Scaling, neuron_name
from dfc_analog.circuit.netlist import SpiceOptions, output_times
from dfc_analog.circuit.simulate import (hardware_trajectory, run_netlist,
                                        simulate_hardware_circuit, simulate_inference_by_layers)
from dfc_analog.errors import DFCError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.learning import output_target
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation.compare import ValidationSettings, compare, largest_error

def child_cpu() -> float:
    """CPU seconds used by finished child processes (the ngspice workers): unlike wall time,
    it does not grow with what else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PARAMS = ControllerParams(tau_v=0.2, alpha=0.001389, k_p=2.0, leak="total")
V_SCALE, TIME_SCALE, SETTLE = 0.5, 1e-6, 1.0
INFERENCE = 5.0     # τ_u: the large network's outputs settle within 1 % in 3.5 τ_u
RELTOL = 1e-4          # ngspice reltol: the op-amp controller's switch-on needs it for 1e-3


def operating_point(real, model, x) -> dict:
    """The feed-forward state at rest (controller off) in ngspice (``.op``, reltol 1e-6) against
    the emulation's: time, the largest |Δ rate| over every neuron relative to the rates' range,
    and the static power (W; amplifiers, controller, drivers) of the circuit and of the model."""
    start, cpu = time.perf_counter(), child_cpu()
    text = write_crossbar_netlist(real, PARAMS, x[0].numpy(), phase="op",
                                  options=SpiceOptions(reltol=1e-6))
    data = run_netlist(text, saved_vectors(real))
    seconds, cpu = time.perf_counter() - start, child_cpu() - cpu
    with torch.no_grad():
        y0 = model.feedforward(x)["state"]
        s = model.dynamics(x, None).signals(y0)
    rate = np.concatenate([data[neuron_name(i, "rate", k)]
                           for i in range(1, len(real.layers) + 1)
                           for k in range(real.layer_sizes[i])]) / real.v_scale
    ref = s["rate"][0].numpy()
    p_amp, p_ctl, drive, _ = circuit_power(real, x[0].numpy(), data)
    _, power = model_power(model, s, x[0].numpy(), np.zeros(1))
    return {"op_s": seconds, "op_cpu_s": cpu,
            "op_err": float(np.abs(rate - ref).max() / (ref.max() - ref.min())),
            "static_circuit": float(p_amp[0] + p_ctl[0] + drive[0]),
            "static_model": float(power[0])}


def problem(sizes, seed: int = 0):
    """(real, model, x, r_star, realise seconds) of the module docstring: the network of
    ``sizes`` on ``pcm``, one MNIST-like input and the eq. (3) target of a random class."""
    gen = torch.Generator().manual_seed(seed)
    net = DFCNetwork(sizes, ["tanh"] * (len(sizes) - 2) + ["linear"], dtype=torch.float64,
                     generator=gen)
    x = torch.rand(1, sizes[0], generator=gen, dtype=torch.float64) * \
        (torch.rand(1, sizes[0], generator=gen, dtype=torch.float64) < 0.2)
    label = torch.randint(sizes[-1], (1,), generator=gen)
    start = time.perf_counter()
    real = realise_network(net, load_spec("pcm"), seed, V_SCALE, Scaling.resistance)
    realise_s = time.perf_counter() - start
    model = HardwareModel(real, PARAMS, TIME_SCALE)
    with torch.no_grad():
        r_L = model.feedforward(x)["rate"][:, -sizes[-1]:]
        r_star, _ = output_target(r_L, label, "cross_entropy", "mean", 0.1)
    return real, model, x, r_star, realise_s


def bench(sizes, t_end: float, seed: int = 0, spice: bool = True, transient: bool = True,
          by_layers: bool = False, wake: bool = True) -> dict:
    """Every stage of the module docstring for the network of ``sizes``, each printed as soon
    as it is done (the large network's transients take long); ``by_layers``: the inference in
    one ngspice run per layer; ``wake``: run the wake transient in ngspice. Returns the
    numbers."""
    options = SpiceOptions(reltol=RELTOL)
    real, model, x, r_star, realise_s = problem(sizes, seed)
    times = output_times(t_end, t_end / 100)
    start = time.perf_counter()
    text = write_crossbar_netlist(real, PARAMS, x[0].numpy(), r_star[0].numpy(), "wake", t_end,
                                  times, SETTLE, options, TIME_SCALE)
    export_s = time.perf_counter() - start
    out = {"sizes": sizes, "realise_s": realise_s, "export_s": export_s}
    print(f"\n{'-'.join(map(str, sizes))} on pcm ({real.device_count()} devices):")
    print(f"  realise {realise_s:.3f} s, export {export_s:.2f} s: netlist "
          f"{len(text.encode()) / 1e6:.2f} MB, {text.count(chr(10))} lines, "
          f"{sum(1 for line in text.splitlines() if line[:1] == 'R')} resistors", flush=True)

    ff_times = np.linspace(0, INFERENCE, int(100 * INFERENCE) + 1)
    m = model_energy(real, PARAMS, x[0].numpy(), None, INFERENCE, ff_times, TIME_SCALE)
    start = time.perf_counter()
    emu = simulate_hardware_wake(model, x, r_star, t_end, torch.as_tensor(times), 1e-9, 1e-9)
    out.update(model_energy=m, emulation_s=time.perf_counter() - start)

    def model_only(why: str) -> dict:
        print(f"  inference ({INFERENCE:g} τ_u), emulation {m.seconds:.2f} s: {m.line()}")
        print(f"  wake transient: emulation {out['emulation_s']:.2f} s ({why})")
        return out

    if not spice:
        return model_only("ngspice not run")
    op = operating_point(real, model, x)
    out.update(op)
    print(f"  operating point (ngspice .op, controller off): {op['op_s']:.2f} s "
          f"({op['op_cpu_s']:.2f} s CPU); circuit vs emulation max |Δ rate| "
          f"{op['op_err']:.3g} of the range; static power circuit "
          f"{op['static_circuit']:.4g} W, model {op['static_model']:.4g} W (ratio "
          f"{op['static_model'] / op['static_circuit']:.4f})", flush=True)
    if not transient:
        return model_only("ngspice transients not run")
    ff = torch.as_tensor(ff_times)
    emu_ff = simulate_hardware_wake(model, x, None, INFERENCE, ff, 1e-9, 1e-9,
                                    from_rest=True)
    cpu = child_cpu()
    if by_layers:
        start = time.perf_counter()
        circ_ff, runs = simulate_inference_by_layers(real, PARAMS, x[0], INFERENCE, ff_times,
                                                     TIME_SCALE, options, SETTLE, progress=True)
        c = energy_by_layers(real, x[0].numpy(), runs, INFERENCE, TIME_SCALE, SETTLE,
                             time.perf_counter() - start)
    else:
        c, data = circuit_energy(real, PARAMS, x[0].numpy(), None, INFERENCE, ff_times,
                                 TIME_SCALE, options)
        circ_ff = hardware_trajectory(real, data, ff_times, TIME_SCALE, SETTLE)
    out.update(circuit_energy=c, inference_cpu_s=child_cpu() - cpu)
    out.update(zip(("inference_err", "inference_worst", "inference_within"),
                   worst_error(emu_ff, circ_ff, options, "feedforward")))
    how = f"ngspice layer by layer ({len(sizes) - 1} runs)" if by_layers else "ngspice"
    print(f"  inference transient ({INFERENCE:g} τ_u): {how} {c.seconds:.2f} s "
          f"({out['inference_cpu_s']:.2f} s CPU), emulation {m.seconds:.2f} s; circuit vs "
          f"emulation: max normalised error {out['inference_err']:.3g} "
          f"({out['inference_worst']}), {'within' if out['inference_within'] else 'OUTSIDE'} "
          f"dfc-validate's tolerance")
    print(f"    {c.line()}")
    print(f"    {m.line()}", flush=True)
    if not wake:
        print(f"  wake transient: emulation {out['emulation_s']:.2f} s; ngspice not run (the "
              f"controller's loop through every layer cannot be cut into runs per layer, and "
              f"the whole circuit did not finish in 2 h: README; --large-wake runs it)")
        return out
    start, cpu = time.perf_counter(), child_cpu()
    circ = simulate_hardware_circuit(real, PARAMS, x[0], r_star[0], t_end, times, TIME_SCALE,
                                     options, SETTLE)
    out.update(wake_tran_s=time.perf_counter() - start, wake_tran_cpu_s=child_cpu() - cpu)
    err, worst, within = worst_error(emu, circ, options, "wake")
    out.update(wake_err=err, worst=worst, within_tol=within)
    print(f"  wake transient: ngspice {out['wake_tran_s']:.2f} s ({out['wake_tran_cpu_s']:.2f} s "
          f"CPU), emulation {out['emulation_s']:.2f} s; circuit vs emulation: max normalised "
          f"error {err:.3g} ({worst}), {'within' if within else 'OUTSIDE'} dfc-validate's "
          f"tolerance", flush=True)
    return out


def worst_error(emu, circ, options, phase: str) -> tuple:
    """(the largest normalised circuit-vs-emulation error over the signal groups that vary,
    its group, whether every group is within dfc-validate's tolerance)."""
    settings = ValidationSettings(phase=phase, spice=options,
                                  scaling=Scaling(TIME_SCALE, V_SCALE))
    signals, _ = compare(emu, circ, settings)
    worst, error = largest_error(signals)
    return error.max, worst, all(e.passed for e in signals.values())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-end", type=float, default=5.0, help="wake phase in τ_u (default 5)")
    parser.add_argument("--small-only", action="store_true", help="only 15-10-10-5")
    parser.add_argument("--emulation-only", action="store_true",
                        help="the model side only (no ngspice runs); no RESULT line")
    parser.add_argument("--large-op-only", action="store_true",
                        help="the large net's ngspice operating point only, not its inference "
                             "(7 min layer by layer on 2 cores); no RESULT line")
    parser.add_argument("--large-wake", action="store_true",
                        help="also run the large net's wake transient in ngspice (the whole "
                             "circuit: it did not finish in 2 h on 2 cores, README)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(f"machine: shared, {torch.get_num_threads()} torch threads; pcm preset, v_scale "
          f"{V_SCALE} V, {TIME_SCALE:g} s per τ_u", flush=True)
    for sizes in ([15, 10, 10, 5],) + (() if args.small_only else ([784, 256, 256, 256, 10],)):
        large = sizes[0] == 784
        r = bench(sizes, args.t_end, spice=not args.emulation_only,
                  transient=not (args.large_op_only and large), by_layers=large,
                  wake=args.large_wake or not large)
    if args.emulation_only or "circuit_energy" not in r:
        return
    print(result_line(r))


def result_line(r: dict) -> str:
    """The RESULT line of the last network: emul_err is the largest circuit-vs-emulation error
    of the transients ngspice ran; wake_tran_s nan where the wake transient was not run."""
    c, m = r["circuit_energy"], r["model_energy"]
    err = max(r["inference_err"], r.get("wake_err", 0.0))
    return (f"RESULT emul_err={err:.3g} energy_fj_per_mac={c.per_mac * 1e15:.4g} "
            f"energy_model_vs_circuit={m.per_inference / c.per_inference:.4f} "
            f"wake_tran_s={r.get('wake_tran_s', float('nan')):.1f} "
            f"wake_tran_cpu_s={r.get('wake_tran_cpu_s', float('nan')):.1f}")

if __name__ == "__main__":
    try:
        main()
    except DFCError as exc:        # a missing ngspice, a failed run: one sentence
        sys.exit(f"error: {exc}")
