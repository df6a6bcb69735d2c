"""Learning on the circuit: the toy task trained with the ODE wake phase and with SPICE in the
loop (the circuit forming its target and integrating eq. (5) itself), from the same seed and data.

Toy task: student-teacher regression, 15-10-10-5 tanh-tanh-linear, method 'dfc', the default
settings of ``python -m dfc_analog.train`` otherwise (diagnostics off). Both runs go through
``run_training``; the SPICE run's wake phase is ``dfc_analog.circuit.learning.SpiceWake``
(``--workers`` persistent ngspice processes). On every SPICE minibatch the ODE update of the same
minibatch and weights is computed as well (outside the timing) and the angle between the two is
kept; the worst is reported.

Prints the test loss per epoch side by side, the wake-phase samples per second of each (time
spent in the wake phase only), and one closing line
``RESULT loss_ratio=<spice/ode final test loss> angle_deg=<worst ΔW angle>
spice_samples_per_s=<x>``. Hardware realisations (``pcm``) are not part of it: the crossbar
netlist has no circuit learning yet.

    python bench/circuit_learning.py [--train-samples 1000] [--epochs 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog.circuit.learning import SpiceWake  # noqa: E402
from dfc_analog.config.options import Config  # noqa: E402
from dfc_analog.learning import ForwardSettings, forward_update, update_angle  # noqa: E402
from dfc_analog.training.loop import run_training  # noqa: E402


class Timed:
    """A wake phase (net, x, y) -> ForwardUpdate that counts its samples and seconds, and with
    ``reference`` also the angle of each update to the reference's on the same minibatch."""

    def __init__(self, wake, reference=None):
        self.wake, self.reference = wake, reference
        self.seconds, self.samples, self.angles = 0.0, 0, []

    def __call__(self, net, x, y):
        t0 = time.perf_counter()
        upd = self.wake(net, x, y)
        self.seconds += time.perf_counter() - t0
        self.samples += x.shape[0]
        if self.reference is not None:
            ref = self.reference(net, x, y)
            self.angles.append(update_angle(ref.gW + ref.gb, upd.gW + upd.gb)[0])
        return upd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-samples", type=int, default=1000)
    p.add_argument("--test-samples", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2,
                   help="persistent ngspice processes sharing each minibatch (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a loaded machine more threads than free "
                        "cores slow torch down many times)")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    cfg = Config.from_dict({"layer_sizes": [15, 10, 10, 5], "method": "dfc",
                            "train_samples": args.train_samples, "val_samples": 200,
                            "test_samples": args.test_samples, "epochs": args.epochs,
                            "batch_size": args.batch_size, "threads": args.threads,
                            "seed": args.seed, "diagnostics": False})
    settings = ForwardSettings.from_config(cfg)

    def ode(net, x, y):
        return forward_update(net, x, y, settings)

    with tempfile.TemporaryDirectory(prefix="dfc-bench-") as tmp:
        ode_wake = Timed(ode)
        ode_rows = run_training(cfg, Path(tmp) / "ode", progress=False, wake=ode_wake)
        spice_cfg = cfg.replace(simulator="spice")
        with SpiceWake(ForwardSettings.from_config(spice_cfg), workers=args.workers) as circuit:
            spice_wake = Timed(circuit, reference=ode)
            spice_rows = run_training(spice_cfg, Path(tmp) / "spice", progress=False,
                                      wake=spice_wake)
    print(f"\ntoy task 15-10-10-5, {args.train_samples} training samples, batch "
          f"{args.batch_size}, seed {args.seed}, {args.threads} torch thread(s), {args.workers} "
          "ngspice processes")
    print("| epoch | test loss ODE | test loss SPICE in the loop |")
    print("| --- | --- | --- |")
    for a, b in zip(ode_rows, spice_rows):
        print(f"| {a['epoch']} | {a['test_loss']:.5g} | {b['test_loss']:.5g} |")
    ode_rate = ode_wake.samples / ode_wake.seconds
    spice_rate = spice_wake.samples / spice_wake.seconds
    angles = spice_wake.angles
    print(f"wake phase: ODE {ode_rate:.1f} samples/s, SPICE {spice_rate:.1f} samples/s "
          f"(ratio {spice_rate / ode_rate:.3g}); ΔW angle SPICE vs ODE over {len(angles)} "
          f"minibatches: mean {sum(angles) / len(angles):.3g}°, worst {max(angles):.3g}°")
    print("pcm: not run (the crossbar netlist has no circuit learning yet)")
    ratio = spice_rows[-1]["test_loss"] / ode_rows[-1]["test_loss"]
    print(f"RESULT loss_ratio={ratio:.4f} angle_deg={max(angles):.4f} "
          f"spice_samples_per_s={spice_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
