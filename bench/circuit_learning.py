"""Learning on the circuit: the toy task trained with the ODE wake phase and with SPICE in the
loop (the circuit forming its target and integrating eq. (5) itself), from the same seed and data.

Toy task: student-teacher regression, 15-10-10-5 tanh-tanh-linear, method 'dfc', the default
settings of ``python -m dfc_analog.train`` otherwise (diagnostics off). Both runs go through
``run_training``; the SPICE run's wake phase is ``dfc_analog.circuit.learning.SpiceWake``
(``--workers`` persistent ngspice processes). On every SPICE minibatch the ODE update of the same
minibatch and weights is computed as well (outside the timing) and the angle between the two is
kept; the worst is reported.

Both are run on the ideal network and on ``pcm`` hardware (``--hardware pcm``, chip 0, 0.25 V
per unit: every minibatch's weights written through the devices, the wake phase on the chip's
effective network, in the ODE and in the circuit alike). Prints the test loss per epoch side
by side, the wake-phase samples per second of each (time spent in the wake phase only), and one
closing line for the ideal network
``RESULT loss_ratio=<spice/ode final test loss> angle_deg=<worst ΔW angle>
spice_samples_per_s=<x>`` (the pcm line before it).

    python bench/circuit_learning.py [--train-samples 1000] [--epochs 3] [--workers 2]
        [--hardware ideal pcm]
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


def run(cfg, workers: int) -> tuple:
    """(ODE rows, SPICE rows, ODE and SPICE wake samples/s, ΔW angles) of one configuration."""
    settings = ForwardSettings.from_config(cfg)

    def ode(net, x, y):
        return forward_update(net, x, y, settings)

    with tempfile.TemporaryDirectory(prefix="dfc-bench-") as tmp:
        ode_wake = Timed(ode)
        ode_rows = run_training(cfg, Path(tmp) / "ode", progress=False, wake=ode_wake)
        spice_cfg = cfg.replace(simulator="spice")
        with SpiceWake(ForwardSettings.from_config(spice_cfg), workers=workers) as circuit:
            spice_wake = Timed(circuit, reference=ode)
            spice_rows = run_training(spice_cfg, Path(tmp) / "spice", progress=False,
                                      wake=spice_wake)
    return (ode_rows, spice_rows, ode_wake.samples / ode_wake.seconds,
            spice_wake.samples / spice_wake.seconds, spice_wake.angles)


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
    p.add_argument("--hardware", nargs="+", default=["ideal", "pcm"],
                   help="'ideal' and/or hardware presets to train on (default: ideal pcm)")
    args = p.parse_args(argv)
    cfg = Config.from_dict({"layer_sizes": [15, 10, 10, 5], "method": "dfc",
                            "train_samples": args.train_samples, "val_samples": 200,
                            "test_samples": args.test_samples, "epochs": args.epochs,
                            "batch_size": args.batch_size, "threads": args.threads,
                            "seed": args.seed, "diagnostics": False})
    results = {name: run(cfg if name == "ideal" else cfg.replace(
        hardware=name, hardware_v_scale=0.25), args.workers) for name in args.hardware}
    print(f"\ntoy task 15-10-10-5, {args.train_samples} training samples, batch "
          f"{args.batch_size}, seed {args.seed}, {args.threads} torch thread(s), {args.workers} "
          "ngspice processes")
    names = list(results)
    print("| epoch | " + " | ".join(f"test loss ODE ({n}) | test loss SPICE ({n})"
                                      for n in names) + " |")
    print("| --- |" + " --- | --- |" * len(names))
    for e in range(len(results[names[0]][0])):
        cells = [f"{results[n][k][e]['test_loss']:.5g}" for n in names for k in (0, 1)]
        print(f"| {results[names[0]][0][e]['epoch']} | " + " | ".join(cells) + " |")
    for n in names:
        ode_rows, spice_rows, ode_rate, spice_rate, angles = results[n]
        ratio = spice_rows[-1]["test_loss"] / ode_rows[-1]["test_loss"]
        print(f"{n}: wake phase ODE {ode_rate:.1f} samples/s, SPICE {spice_rate:.1f} samples/s "
              f"(ratio {spice_rate / ode_rate:.3g}); ΔW angle SPICE vs ODE over {len(angles)} "
              f"minibatches: mean {sum(angles) / len(angles):.3g}°, worst {max(angles):.3g}°; "
              f"final test loss SPICE / ODE {ratio:.4f}")
    for n in sorted(names, key=lambda n: n == "ideal"):
        ode_rows, spice_rows, _, spice_rate, angles = results[n]
        ratio = spice_rows[-1]["test_loss"] / ode_rows[-1]["test_loss"]
        print(f"{'RESULT' if n == 'ideal' else n + ':'} loss_ratio={ratio:.4f} "
              f"angle_deg={max(angles):.4f} spice_samples_per_s={spice_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
