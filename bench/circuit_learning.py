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

With ``--train-feedback`` the feedback weights are trained too (sleep 'simulated':
``--sleep-epochs-init`` pre-training passes, ``--sleep-epochs`` sleep passes per epoch), and the
SPICE run's sleep passes run in ngspice (``dfc_analog.circuit.learning.SpiceSleep``) on the
noise path the ODE run's model draws for the same seed; it also prints the sleep passes'
samples per second of each and the Condition-2 ratio (mean over 256 validation samples) each
run reached, and the RESULT line gains ``spice_sleep_samples_per_s=<x>
condition2_ode=<r> condition2_spice=<r>``.

    python bench/circuit_learning.py [--train-samples 1000] [--epochs 3] [--workers 2]
        [--hardware ideal pcm] [--train-feedback [--sleep-epochs-init 1] [--sleep-epochs 1]]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog import runio  # noqa: E402
from dfc_analog.circuit.learning import SpiceSleep, SpiceWake  # noqa: E402
from dfc_analog.config.options import Config  # noqa: E402
from dfc_analog.data import load_dataset  # noqa: E402
from dfc_analog.learning import ForwardSettings, forward_update, update_angle  # noqa: E402
from dfc_analog.learning.sleep import SleepParams, feedback_update  # noqa: E402
from dfc_analog.theory import condition2_ratio  # noqa: E402
from dfc_analog.training.loop import run_training  # noqa: E402


class Timed:
    """A phase (a wake phase (net, x, y) -> ForwardUpdate, or a sleep phase (net, x, generator)
    -> g_Q) that counts its samples and seconds, and with ``reference`` (a wake phase) also the
    angle of each update to the reference's on the same minibatch."""

    def __init__(self, phase, reference=None):
        self.phase, self.reference = phase, reference
        self.seconds, self.samples, self.angles = 0.0, 0, []

    def __call__(self, net, x, arg):
        t0 = time.perf_counter()
        upd = self.phase(net, x, arg)
        self.seconds += time.perf_counter() - t0
        self.samples += x.shape[0]
        if self.reference is not None:
            ref = self.reference(net, x, arg)
            self.angles.append(update_angle(ref.gW + ref.gb, upd.gW + upd.gb)[0])
        return upd

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


def condition2(cfg, folder: Path) -> float:
    """The Condition-2 ratio of a run folder's network, mean over 256 validation samples."""
    _, net = runio.load_run(folder)
    return float(condition2_ratio(net, load_dataset(cfg).val.x[:256].to(net.W[0].dtype)).mean())


def run(cfg, workers: int) -> dict:
    """Test-loss rows, wake (and sleep) samples per second, ΔW angles and Condition-2 ratios of
    the ODE and the SPICE run of one configuration."""
    settings = ForwardSettings.from_config(cfg)
    p = SleepParams.from_config(cfg)

    def ode(net, x, y):
        return forward_update(net, x, y, settings)

    def ode_sleep(net, x, generator):
        return feedback_update(net, x, p, generator)

    with tempfile.TemporaryDirectory(prefix="dfc-bench-") as tmp:
        ode_wake, ode_fb = Timed(ode), Timed(ode_sleep)
        ode_rows = run_training(cfg, Path(tmp) / "ode", progress=False, wake=ode_wake,
                                sleep=ode_fb)
        spice_cfg = cfg.replace(simulator="spice")
        with SpiceWake(ForwardSettings.from_config(spice_cfg), workers=workers) as circuit, \
                SpiceSleep(p, workers=workers) as circuit_sleep:
            spice_wake, spice_fb = Timed(circuit, reference=ode), Timed(circuit_sleep)
            spice_rows = run_training(spice_cfg, Path(tmp) / "spice", progress=False,
                                      wake=spice_wake, sleep=spice_fb)
        c2 = [condition2(cfg, Path(tmp) / name) for name in ("ode", "spice")] \
            if cfg.train_feedback else [float("nan")] * 2
    return {"rows": (ode_rows, spice_rows), "wake": (ode_wake.rate, spice_wake.rate),
            "sleep": (ode_fb.rate, spice_fb.rate), "angles": spice_wake.angles,
            "condition2": c2}


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
    p.add_argument("--train-feedback", action="store_true",
                   help="train the feedback weights too, the SPICE run's sleep passes in ngspice")
    p.add_argument("--sleep-epochs-init", type=int, default=1,
                   help="feedback pre-training passes with --train-feedback (default 1)")
    p.add_argument("--sleep-epochs", type=int, default=1,
                   help="sleep passes per epoch with --train-feedback (default 1)")
    args = p.parse_args(argv)
    cfg = Config.from_dict({"layer_sizes": [15, 10, 10, 5], "method": "dfc",
                            "train_samples": args.train_samples, "val_samples": 200,
                            "test_samples": args.test_samples, "epochs": args.epochs,
                            "batch_size": args.batch_size, "threads": args.threads,
                            "seed": args.seed, "diagnostics": False,
                            "train_feedback": args.train_feedback,
                            "sleep_epochs_init": args.sleep_epochs_init,
                            "sleep_epochs": args.sleep_epochs})
    results = {name: run(cfg if name == "ideal" else cfg.replace(
        hardware=name, hardware_v_scale=0.25), args.workers) for name in args.hardware}
    feedback = (f", trained feedback ({args.sleep_epochs_init} pre-training and "
                f"{args.sleep_epochs} sleep passes per epoch, sleep in ngspice)"
                if args.train_feedback else "")
    print(f"\ntoy task 15-10-10-5, {args.train_samples} training samples, batch "
          f"{args.batch_size}, seed {args.seed}, {args.threads} torch thread(s), {args.workers} "
          f"ngspice processes{feedback}")
    names = list(results)
    print("| epoch | " + " | ".join(f"test loss ODE ({n}) | test loss SPICE ({n})"
                                      for n in names) + " |")
    print("| --- |" + " --- | --- |" * len(names))
    for e in range(len(results[names[0]]["rows"][0])):
        cells = [f"{results[n]['rows'][k][e]['test_loss']:.5g}" for n in names for k in (0, 1)]
        print(f"| {results[names[0]]['rows'][0][e]['epoch']} | " + " | ".join(cells) + " |")
    summary = {}
    for n in names:
        r = results[n]
        (ode_rows, spice_rows), (ode_rate, spice_rate), angles = r["rows"], r["wake"], r["angles"]
        ratio = spice_rows[-1]["test_loss"] / ode_rows[-1]["test_loss"]
        print(f"{n}: wake phase ODE {ode_rate:.1f} samples/s, SPICE {spice_rate:.1f} samples/s "
              f"(ratio {spice_rate / ode_rate:.3g}); ΔW angle SPICE vs ODE over {len(angles)} "
              f"minibatches: mean {sum(angles) / len(angles):.3g}°, worst {max(angles):.3g}°; "
              f"final test loss SPICE / ODE {ratio:.4f}")
        line = (f"loss_ratio={ratio:.4f} angle_deg={max(angles):.4f} "
                f"spice_samples_per_s={spice_rate:.1f}")
        if args.train_feedback:
            (ode_sleep, spice_sleep), (c2_ode, c2_spice) = r["sleep"], r["condition2"]
            print(f"{n}: sleep passes ODE {ode_sleep:.1f} samples/s, SPICE {spice_sleep:.1f} "
                  f"samples/s (ratio {spice_sleep / ode_sleep:.3g}); Condition-2 ratio reached: "
                  f"ODE {c2_ode:.4f}, SPICE {c2_spice:.4f}")
            line += (f" spice_sleep_samples_per_s={spice_sleep:.1f} condition2_ode={c2_ode:.4f} "
                     f"condition2_spice={c2_spice:.4f}")
        summary[n] = line
    for n in sorted(names, key=lambda n: n == "ideal"):
        print(f"{'RESULT' if n == 'ideal' else n + ':'} {summary[n]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
