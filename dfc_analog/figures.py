"""The paper's Figures 1D and 3: ``python -m dfc_analog.figures {fig1d,fig3} --out DIR [--quick]``.

fig1d  output r_L(t) and control u(t) of three samples settling on their targets r_L* (Fig. 1D):
       15-10-10-1 network, feedback weights pre-trained by sleep phases, untrained forward
       weights, first minibatch, λ = 0.05, α = 0.0015, k_p = 1, τ_v = 0.2, T = 10 τ_u.
fig3   the six panels of Fig. 3 over training on the student-teacher task (15-10-10-5): DFC,
       DFC-SS and DFC-SSA with trained and with fixed feedback, and DFA. Each variant is an
       ordinary run folder under DIR/runs/, whose per-epoch diagnostics the figure plots.

Each writes a PNG and a JSON with the plotted series and their final values. ``--quick`` shortens
the runs (fig3: 50 epochs instead of 300) so that fig3 takes minutes rather than hours.
"""
from __future__ import annotations

if __name__ == "__main__":
    from dfc_analog.cli import quiet_startup
    quiet_startup()

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import torch

from dfc_analog import cli, runio
from dfc_analog.config.options import MAX_SEED, Config
from dfc_analog.config.seeds import generator
from dfc_analog.data import load_dataset
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import DFCError
from dfc_analog.learning.forward import output_target
from dfc_analog.model.network import DFCNetwork
from dfc_analog.parallel import available_cores, run_tasks
from dfc_analog.learning.sleep import SleepParams, feedback_update
from dfc_analog.solvers.wake import SolverSettings, simulate_wake
from dfc_analog.training.loop import (apply_feedback_update, epoch_order, make_feedback_optimizer,
                       run_training)

# The Fig. 3 setting (reference §4.2): SGD for W and Q, lr 0.05 with λ = 0.05 normalised.
FIG3_BASE = dict(layer_sizes=[15, 10, 10, 5], activations=["tanh", "tanh", "linear"],
                 optimizer="sgd", lr=0.05, normalize_lr=True, target_stepsize=0.05,
                 alpha=0.0015, k_p=1.5, tau_v=0.2, t_end=5.0, sleep_epochs=3, epochs=300,
                 sleep_epochs_init=50)
FIG3_VARIANTS = {   # longest first, so that the worker processes finish together
    "DFC": dict(method="dfc", train_feedback=True),
    "DFC-SS": dict(method="dfc-ss", train_feedback=True),
    "DFC-SSA": dict(method="dfc-ssa", train_feedback=True),
    "DFC (fixed)": dict(method="dfc"),
    "DFC-SS (fixed)": dict(method="dfc-ss"),
    "DFC-SSA (fixed)": dict(method="dfc-ssa"),
    "DFA": dict(method="dfa"),
}
FIG3_PANELS = [("condition2", "A  Condition 2: ‖PQ‖/‖Q‖"), ("angle_mn", "B  angle to MN (°)"),
               ("condition1", "C  Condition 1: std/mean of ‖r_i‖"),
               ("angle_gn", "D  angle to GN (°)"), ("max_eig_pi", "E  max Re λ(A_PI)"),
               ("angle_ssa", "F  angle to DFC-SSA (°)")]
QUICK = dict(epochs=50)   # the paper runs 300; the ordering of panels A, B and D shows by 50


def fig1d(out: Path, quick: bool, seed: int) -> dict:
    cfg = Config(layer_sizes=[15, 10, 10, 1], train_feedback=True, alpha=0.0015, k_p=1.0,
                 tau_v=0.2, t_end=10.0, target_stepsize=0.05, seed=seed, dtype="float64",
                 sleep_epochs_init=10 if quick else 50)
    net = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    data = load_dataset(cfg)
    opt = make_feedback_optimizer(cfg, net, cfg.fb_lr_init)
    sleep = SleepParams.from_config(cfg)
    n = len(data.train)
    for epoch in range(cfg.sleep_epochs_init):          # feedback pre-training
        order = epoch_order(cfg.seed, epoch, n)
        for b in range(0, n, cfg.batch_size):
            noise = generator("fig1d_sleep_noise", cfg.seed, epoch, b)
            apply_feedback_update(cfg, net, opt, feedback_update(
                net, data.train.x[order[b:b + cfg.batch_size]], sleep, noise))
    x, y = data.train.x[:cfg.batch_size], data.train.y[:cfg.batch_size]
    with torch.no_grad():
        _, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1], y, cfg.loss, cfg.loss_reduction, cfg.target_stepsize)
    times = torch.linspace(0, cfg.t_end, 501, dtype=torch.float64)
    wake = simulate_wake(net, x, r_star, ControllerParams.from_config(cfg),
                         SolverSettings("dopri5", 1e-6, 1e-8), cfg.t_end, times=times)
    tr = wake.trajectory
    samples = [0, 1, 2]
    series = {"t": tr.t.tolist(),
              "samples": [{"r_L": tr.rate[-1][:, s, 0].tolist(), "r_star": float(r_star[s, 0]),
                           "r_L_feedforward": float(r_ff[-1][s, 0]),
                           "u": tr.u[:, s, 0].tolist()} for s in samples]}
    final = {f"sample{s}": {"r_L_final": float(tr.rate[-1][-1, s, 0]),
                            "r_star": float(r_star[s, 0]),
                            "remaining_error_fraction": float(
                                (r_star[s, 0] - tr.rate[-1][-1, s, 0]) / (r_star[s, 0]
                                                                          - r_ff[-1][s, 0]))}
             for s in samples}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=120)
    for ax, s, d in zip(axes, samples, series["samples"]):
        ax.axhline(d["r_L_feedforward"], color="0.6", ls=":", lw=1, label="r_L⁻ (feed-forward)")
        ax.axhline(d["r_star"], color="k", ls="--", lw=1, label="r_L* (target)")
        ax.plot(series["t"], d["r_L"], color="tab:blue", lw=1.8, label="r_L(t)")
        ax.set_xlabel("t / τ_u")
        ax.set_title(f"sample {s + 1}", fontsize=10)
        ax.ticklabel_format(useOffset=False)
        ax_u = ax.twinx()
        ax_u.plot(series["t"], d["u"], color="tab:red", lw=1, alpha=0.8)
        ax_u.set_ylabel("control u(t)", color="tab:red")
        ax_u.tick_params(axis="y", colors="tab:red")
    axes[0].set_ylabel("output")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Fig. 1D: the controller drives the output r_L to its target r_L* "
                 "(red: control u)")
    fig.tight_layout()
    _write_figure(out, "fig1d", fig, {"series": series, "final": final,
                                      "config": cfg.to_dict()})
    return final


def _train_variant(settings: dict, folder: str) -> list:
    """One Fig. 3 variant in a worker process (one thread: the network is tiny, and two
    multi-threaded processes on the same cores would fight over them)."""
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):     # its metrics.csv keeps every epoch
        return run_training(Config.from_dict(settings), Path(folder), progress=False)


def fig3(out: Path, quick: bool, seed: int, progress: bool) -> dict:
    from tqdm import tqdm

    runs = out / "runs"
    jobs = {}
    for name, variant in FIG3_VARIANTS.items():
        settings = {**FIG3_BASE, **variant, "seed": seed, **(QUICK if quick else {})}
        Config.from_dict(settings, source=f"fig3 variant {name}")      # fail early, here
        folder = runs / name.lower().replace(" ", "").replace("(", "-").replace(")", "")
        jobs[name] = dict(settings=settings, folder=str(runio.prepare_run_dir(folder)))
    workers = min(len(jobs), available_cores())
    print(f"fig3: training {len(jobs)} variants for {QUICK['epochs'] if quick else 300} epochs "
          f"in {workers} processes, into {runs}", flush=True)
    results = {}
    names = list(jobs)
    with tqdm(total=len(jobs), desc="fig3 variants", disable=not progress) as bar:
        for index, rows in run_tasks(_train_variant, list(jobs.values()), workers):
            name = names[index]
            results[name] = {key: [r[key] for r in rows] for key, _ in FIG3_PANELS}
            results[name]["epoch"] = [r["epoch"] for r in rows]
            results[name]["test_loss"] = [r["test_loss"] for r in rows]
            bar.update(1)
            bar.write(f"fig3: {name} done (test loss {rows[-1]['test_loss']:.4g})")
    results = {name: results[name] for name in FIG3_VARIANTS}
    window = 10 if quick else 30
    final = {name: {key: _tail_mean(series[key], window) for key, _ in FIG3_PANELS}
             | {"test_loss": series["test_loss"][-1]} for name, series in results.items()}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), dpi=120)
    styles = {"DFC": ("tab:blue", "-"), "DFC-SS": ("tab:orange", "-"),
              "DFC-SSA": ("tab:green", "-"), "DFC (fixed)": ("tab:blue", "--"),
              "DFC-SS (fixed)": ("tab:orange", "--"), "DFC-SSA (fixed)": ("tab:green", "--"),
              "DFA": ("tab:red", ":")}
    for ax, (key, title) in zip(axes.flat, FIG3_PANELS):
        for name, series in results.items():
            values = series[key][1:]        # training epochs (epoch 0 precedes pre-training)
            if all(not math.isfinite(v) for v in values):
                continue
            mean, std = _rolling(values, window)
            color, ls = styles[name]
            epochs = series["epoch"][1:]
            ax.plot(epochs, mean, color=color, ls=ls, lw=1.5, label=name)
            ax.fill_between(epochs, [m - s for m, s in zip(mean, std)],
                            [m + s for m, s in zip(mean, std)], color=color, alpha=0.12)
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Fig. 3: student-teacher regression 15-10-10-5, k_p = 1.5, λ = 0.05, α = "
                 f"0.0015 ({'quick: ' if quick else ''}rolling mean ± std over {window} epochs)")
    fig.tight_layout()
    _write_figure(out, "fig3", fig, {"series": results, "final": final, "window": window,
                                     "quick": quick})
    return final


def _rolling(values, window):
    mean, std = [], []
    for k in range(len(values)):
        chunk = [v for v in values[max(0, k - window + 1):k + 1] if math.isfinite(v)]
        m = sum(chunk) / len(chunk) if chunk else float("nan")
        mean.append(m)
        std.append(math.sqrt(sum((v - m) ** 2 for v in chunk) / len(chunk)) if chunk else 0.0)
    return mean, std


def _tail_mean(values, window):
    tail = [v for v in values[-window:] if math.isfinite(v)]
    return sum(tail) / len(tail) if tail else float("nan")


def _write_figure(out: Path, name: str, fig, data: dict) -> None:
    runio.save_figure(out / f"{name}.png", fig)
    runio.atomic_write(out / f"{name}.json", (json.dumps(data, indent=1) + "\n").encode())


def build_parser():
    parser = cli.parser(
        "figures",
        description="Reproduce the paper's Figure 1D or Figure 3 as a PNG and a JSON of the "
                    "plotted series and their final values.")
    parser.add_argument("figure", choices=["fig1d", "fig3"], help="which figure")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs (fig3: 50 epochs instead of 300, about 5 minutes "
                             "on two cores; fig1d: 10 pre-training epochs instead of 50)")
    parser.add_argument("--seed", type=int, default=42, help="seed of data and weights")
    return parser


@cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.seed <= MAX_SEED:
        raise DFCError(f"--seed must be an integer from 0 to {MAX_SEED}, got {args.seed}.")
    cli.set_threads(args.threads)
    with runio.output_dir(Path(args.out)) as out:
        if args.figure == "fig1d":
            final = fig1d(out, args.quick, args.seed)
        else:
            final = fig3(out, args.quick, args.seed, progress=sys.stderr.isatty())
    print(json.dumps(final, indent=1))
    print(f"wrote {out / (args.figure + '.png')} and {out / (args.figure + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
