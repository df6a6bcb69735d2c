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

With ``--schedule single-phase`` (trained feedback, ``--sleep-epochs-init`` pre-training
passes, then per minibatch one single phase with both plasticities, paper App. C.3) the SPICE
run's single phases run in ngspice (``dfc_analog.circuit.learning.SpiceSinglePhase``: ΔW and ΔQ
from the circuit's integrators, the noise path the ODE run's model draws for the same seed),
its pre-training passes too; on every SPICE minibatch the model's single phase of the same
minibatch, weights and noise path (at its own Δt) is computed as well, outside the timing, and
the worst ΔW and ΔQ angles are kept. The RESULT line then reads ``loss_ratio=<x>
angle_deg=<worst ΔW angle> angle_Q_deg=<worst ΔQ angle> spice_samples_per_s=<single phases per
second> condition2_ode=<r> condition2_spice=<r>``.

    python bench/circuit_learning.py [--train-samples 1000] [--epochs 3] [--workers 2]
        [--hardware ideal pcm] [--train-feedback [--sleep-epochs-init 1] [--sleep-epochs 1]]
        [--schedule single-phase [--sleep-epochs-init 0]]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog import runio  # noqa: E402
from dfc_analog.circuit.learning import SpiceSinglePhase, SpiceSleep, SpiceWake  # noqa: E402
from dfc_analog.config.options import Config  # noqa: E402
from dfc_analog.data import load_dataset  # noqa: E402
from dfc_analog.learning import ForwardSettings, forward_update, update_angle  # noqa: E402
from dfc_analog.learning.single_phase import SinglePhaseParams, single_phase_update  # noqa: E402
from dfc_analog.learning.sleep import SleepParams, feedback_update  # noqa: E402
from dfc_analog.theory import condition2_ratio  # noqa: E402
from dfc_analog.training.loop import run_training  # noqa: E402


class Timed:
    """A phase (a wake phase (net, x, y) -> ForwardUpdate, a sleep phase (net, x, generator)
    -> g_Q, or a single phase (net, x, y, generator) -> (ForwardUpdate, g_Q)) that counts its
    samples and seconds, and with ``reference`` (a wake or single phase) also the angle of each
    update to the reference's on the same minibatch (and noise path: the generator is rewound)
    in ``angles`` (ΔW) and ``angles_q`` (ΔQ)."""

    def __init__(self, phase, reference=None):
        self.phase, self.reference = phase, reference
        self.seconds, self.samples, self.angles, self.angles_q = 0.0, 0, [], []

    def __call__(self, net, x, *args):
        noise = args[-1] if isinstance(args[-1], torch.Generator) else None
        state = noise.get_state() if noise is not None and self.reference else None
        t0 = time.perf_counter()
        upd = self.phase(net, x, *args)
        self.seconds += time.perf_counter() - t0
        self.samples += x.shape[0]
        if self.reference is not None:
            if state is not None:
                noise.set_state(state)
            ref = self.reference(net, x, *args)
            (fwd, g_q), (ref_fwd, ref_q) = ((u, None) if noise is None else u
                                            for u in (upd, ref))
            self.angles.append(update_angle(ref_fwd.gW + ref_fwd.gb, fwd.gW + fwd.gb)[0])
            if g_q is not None:
                self.angles_q.append(update_angle(ref_q, g_q)[0])
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
    single_params = SinglePhaseParams.from_config(cfg)
    single = cfg.schedule == "single-phase"
    kind = "single" if single else "wake"

    def ode(net, x, y):
        return forward_update(net, x, y, settings)

    def ode_single(net, x, y, generator):
        return single_phase_update(net, x, y, single_params, generator)

    def ode_sleep(net, x, generator):
        return feedback_update(net, x, p, generator)

    with tempfile.TemporaryDirectory(prefix="dfc-bench-") as tmp:
        ode_phase, ode_fb = Timed(ode_single if single else ode), Timed(ode_sleep)
        ode_rows = run_training(cfg, Path(tmp) / "ode", progress=False, sleep=ode_fb,
                                **{kind: ode_phase})
        spice_cfg = cfg.replace(simulator="spice")
        circuit = SpiceSinglePhase(single_params, workers=workers) if single else \
            SpiceWake(ForwardSettings.from_config(spice_cfg), workers=workers)
        with circuit, SpiceSleep(p, workers=workers) as circuit_sleep:
            spice_phase = Timed(circuit, reference=ode_single if single else ode)
            spice_fb = Timed(circuit_sleep)
            spice_rows = run_training(spice_cfg, Path(tmp) / "spice", progress=False,
                                      sleep=spice_fb, **{kind: spice_phase})
        c2 = [condition2(cfg, Path(tmp) / name) for name in ("ode", "spice")] \
            if cfg.train_feedback else [float("nan")] * 2
    return {"rows": (ode_rows, spice_rows), "wake": (ode_phase.rate, spice_phase.rate),
            "sleep": (ode_fb.rate, spice_fb.rate), "angles": spice_phase.angles,
            "angles_q": spice_phase.angles_q, "condition2": c2}


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
    p.add_argument("--schedule", choices=("two-phase", "single-phase"), default="two-phase",
                   help="'single-phase': trained feedback, one single phase per minibatch (in "
                        "ngspice for the SPICE run)")
    args = p.parse_args(argv)
    single = args.schedule == "single-phase"
    cfg = Config.from_dict({"layer_sizes": [15, 10, 10, 5], "method": "dfc",
                            "train_samples": args.train_samples, "val_samples": 200,
                            "test_samples": args.test_samples, "epochs": args.epochs,
                            "batch_size": args.batch_size, "threads": args.threads,
                            "seed": args.seed, "diagnostics": False,
                            "train_feedback": args.train_feedback or single,
                            "schedule": args.schedule,
                            "sleep_epochs_init": args.sleep_epochs_init,
                            "sleep_epochs": args.sleep_epochs})
    results = {name: run(cfg if name == "ideal" else cfg.replace(
        hardware=name, hardware_v_scale=0.25), args.workers) for name in args.hardware}
    feedback = (f", single phase ({args.sleep_epochs_init} pre-training passes, then W and Q "
                f"learnt together in ngspice; T {cfg.t_end:g}, Δt {cfg.step_size:g}, τ_hp "
                f"{cfg.tau_hp:g}, fb_delay {cfg.fb_delay:g})" if single else
                f", trained feedback ({args.sleep_epochs_init} pre-training and "
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
        angles_q = r["angles_q"]
        print(f"{n}: {'single' if single else 'wake'} phase ODE {ode_rate:.1f} samples/s, SPICE "
              f"{spice_rate:.1f} samples/s (ratio {spice_rate / ode_rate:.3g}); ΔW angle SPICE "
              f"vs ODE over {len(angles)} minibatches: mean {sum(angles) / len(angles):.3g}°, "
              f"worst {max(angles):.3g}°" + (
                  f"; ΔQ angle: mean {sum(angles_q) / len(angles_q):.3g}°, worst "
                  f"{max(angles_q):.3g}°" if single else "")
              + f"; final test loss SPICE / ODE {ratio:.4f}")
        line = f"loss_ratio={ratio:.4f} angle_deg={max(angles):.4f} " + (
            f"angle_Q_deg={max(angles_q):.4f} " if single else "") + \
            f"spice_samples_per_s={spice_rate:.1f}"
        if single:
            c2_ode, c2_spice = r["condition2"]
            print(f"{n}: Condition-2 ratio reached: ODE {c2_ode:.4f}, SPICE {c2_spice:.4f}")
            line += f" condition2_ode={c2_ode:.4f} condition2_spice={c2_spice:.4f}"
        elif args.train_feedback:
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
