"""Table 1 side by side on real MNIST digits: BP, DFA, DFC-SSA, DFC-SS and DFC from their presets.

    python bench/mnist_table.py --data-dir ../shared/data/mnist-10k
    python bench/mnist_table.py --autoencoder --data-dir ../shared/data/mnist-10k

Every method trains from its MNIST preset (``presets/mnist-<method>.toml``, the authors'
hyper-parameters) on the same split of the data folder (mnist-10k: 7,200 train + 800 validation
carved out of its 8,000 training digits, 2,000 test), with the same seed and the same number of
epochs (cut for time: ``--epochs``; the feedback pre-training is the presets' unless
``--pretrain-epochs`` cuts it). Diagnostics are off. Reported per method: the test error at the
epoch of best validation error (Table 1's rule), the seconds of one wake epoch (forward-weight
training only), of its sleep epochs (the trained-feedback methods' X = 3 feedback passes), and of
the whole epoch (medians over the epochs), each relative to BP. Evaluation after each epoch is
excluded from every timing. With several seeds (``--seed 42 1 2 3 4``; Table 1 reports mean ± std
over 5) every error is the mean ± std over them, differences between methods are paired by seed
(the same seed gives every method the same initial weights and minibatch order), and times are
medians over the seeds of each seed's ratio. The last line is

    RESULT bp=<err%> dfc_ssa_exp=<err%> dfc_exp=<err%> ssa_exp_time_ratio=<x> dfc_exp_time_ratio=<y>

for the ``-exp`` variants (the sleep phase's expected update in closed form, ``sleep =
"expected"``, docs/expected-sleep.md), with the time ratios of whole epochs (wake + sleep) to BP's
epoch; before it, where the simulated-sleep rows ran, the same line for them (``dfc_ssa=``,
``dfc=``, ``dfa=``) and each ``-exp`` row's difference to its simulated twin.
``dfc-ssa-exp-single`` is DFC-SSA with the expected feedback update in the single-phase
schedule (one J per minibatch for Lemma 1 and a step of Q; no sleep passes after pre-training). Before those: the
matrix-product arithmetic of one epoch's sleep passes relative to a BP epoch's, which is the time
ratio they reach where they run at BP's FLOP/s, whatever the implementation.
``--autoencoder`` runs the MNIST-autoencoder presets of BP, DFA and DFC (trained feedback,
simulated and expected sleep) instead and reports test losses.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfc_analog import runio  # noqa: E402
from dfc_analog.errors import DFCError  # noqa: E402
from dfc_analog.config.presets import preset_config  # noqa: E402
from dfc_analog.training.loop import (finished_metrics, mean_std, metric_name,  # noqa: E402
                                      reported, run_training)

CLASSIFIERS = ("bp", "dfa", "dfc-ssa", "dfc", "dfc-ss", "dfc-ssa-exp", "dfc-exp", "dfc-ss-exp",
               "dfc-ssa-exp-single")
AUTOENCODERS = ("bp", "dfa", "dfc", "dfc-exp")
LAST_EPOCHS = 5       # epochs averaged in the steadier column beside Table 1's statistic


def layer_products(n: list) -> tuple[int, int, int]:
    """FLOPs per sample of one vector through the layers of sizes ``n``: all of them (the
    forward pass), those above the first, and the hidden ones above the first (the Jacobian's
    rows go back through these; its output block is elementwise)."""
    def through(pairs):
        return 2 * sum(a * b for a, b in pairs)
    return (through(zip(n[:-1], n[1:])), through(zip(n[1:-1], n[2:])),
            through(zip(n[1:-2], n[2:-1])))


def product_flops(cfg) -> tuple[int, int]:
    """Floating-point operations (2 per multiply-add) of the matrix products per training sample:
    one BP step (forward pass, then gradients of the weights and of the hidden activations), and
    one epoch's ``sleep_epochs`` sleep passes (a forward pass, then per Euler-Maruyama step the
    products W_i Δr_{i-1} of the layers above the first, Q u and v_A uᵀ; ``sleep._simulate``).
    With the expected sleep phase the forward weights stay fixed over the epoch's passes, so
    J is computed once per sample and epoch (a forward pass, the Jacobian: n_L rows back through
    the hidden layers above the first, the output layer's block being elementwise, and J Σ² Jᵀ,
    :func:`noise_covariance`; ``FeedbackJacobians``) and each pass adds J Q and
    Σ_b Jᵀ Y and 12 n_L³ of n_L × n_L algebra around the Lyapunov solve, whose own products
    (32 n_L³, then 48 n_L³ per doubling: 4 doublings on MNIST in float32, the last without its
    squaring) are left out
    (``sleep_expected``)."""
    n = cfg.layer_sizes
    forward, above_first, hidden_above_first = layer_products(n)
    bp = 2 * forward + above_first
    if not cfg.train_feedback or cfg.schedule == "single-phase":      # no sleep passes
        return bp, 0
    if cfg.sleep == "expected":
        n_L_products = 2 * sum(n[1:]) * n[-1] ** 2           # one (n_L × Σ n_i)(Σ n_i × n_L)
        jacobians = forward + n[-1] * hidden_above_first + noise_covariance(cfg)
        return bp, jacobians + cfg.sleep_epochs * (2 * n_L_products + 12 * n[-1] ** 3)
    steps = max(1, int(round(cfg.t_end_fb / cfg.dt_fb)))
    per_step = above_first + 2 * 2 * sum(n[1:]) * n[-1]
    return bp, cfg.sleep_epochs * (forward + steps * per_step)


def noise_covariance(cfg) -> int:
    """FLOPs per sample of J Σ² Jᵀ (``sleep_jacobian``): J_h J_hᵀ over the hidden columns, and
    J_L J_Lᵀ unless the output is linear (J_L = I adds σ_L² I)."""
    n = cfg.layer_sizes
    columns = sum(n[1:]) - (n[-1] if cfg.activations[-1] == "linear" else 0)
    return 2 * columns * n[-1] ** 2


def train_method(args, task: str, method: str, seed: int) -> dict:
    """One method's run for one seed (trained, or with ``--reuse`` found finished in its
    folder ``OUT/seed-<seed>/<task>-<method>``): its numbers for the table."""
    overrides = dict(data_dir=args.data_dir, epochs=args.epochs, diagnostics=False, seed=seed)
    cfg = preset_config(f"{task}-{method}", **overrides)
    if cfg.train_feedback and args.pretrain_epochs is not None:
        cfg = cfg.replace(sleep_epochs_init=args.pretrain_epochs)
    if args.dtype:
        cfg = cfg.replace(dtype=args.dtype)
    if args.device:
        cfg = cfg.replace(device=args.device)
    run = Path(args.out) / f"seed-{seed}" / f"{task}-{method}"
    rows = finished_metrics(run, cfg) if args.reuse else None
    t0 = time.perf_counter()
    if rows is None:
        if (run / runio.CHECKPOINT).exists():
            (run / runio.CHECKPOINT).unlink()
        rows = run_training(cfg, run, progress=sys.stderr.isatty())
    wall = time.perf_counter() - t0
    value, epoch = reported(cfg, rows)
    trained = rows[1:]
    test_key = "test_error" if cfg.loss == "cross_entropy" else "test_loss"
    r = dict(value=value, epoch=epoch, metric=metric_name(cfg), wall=wall,
             # the test metric averaged over the last LAST_EPOCHS epochs: steadier than the
             # one epoch that the best validation picks (ties on one validation digit)
             last=statistics.fmean(row[test_key] for row in trained[-LAST_EPOCHS:]),
             flops=product_flops(cfg),
             # medians over epochs: a busy moment of a shared machine moves one epoch's
             # seconds, not the method's
             wake=statistics.median(row["seconds"] for row in trained),
             sleep=statistics.median(row["sleep_seconds"] for row in trained),
             nfe=statistics.fmean(row["nfe_per_batch"] for row in trained))
    print(f"  seed {seed} {method:8s} {r['metric']} {value:.4g} (epoch {epoch}), wake epoch "
          f"{r['wake']:.2f} s, sleep {r['sleep']:.2f} s, wall {wall:.0f} s"
          f"{' (finished run reused)' if wall < 1 else ''}", flush=True)
    return r


def across_seeds(by_seed: dict) -> dict:
    """One method's runs ``{seed: numbers}`` over the seeds: mean and std of the test metrics
    (``value``, ``last``), medians over the seeds of the seconds per epoch (each run's own
    median over its epochs), the mean evaluations per minibatch and the best epochs."""
    runs = list(by_seed.values())
    return dict(value=mean_std(r["value"] for r in runs), last=mean_std(r["last"] for r in runs),
                wake=statistics.median(r["wake"] for r in runs),
                sleep=statistics.median(r["sleep"] for r in runs),
                nfe=statistics.fmean(r["nfe"] for r in runs),
                epochs=[r["epoch"] for r in runs], metric=runs[0]["metric"],
                flops=runs[0]["flops"])


def paired(a: dict, b: dict, key: str) -> tuple[float, float]:
    """Mean and std over the seeds of ``a[seed][key] - b[seed][key]``: two methods started from
    the same seed's initial weights and minibatch order, compared seed by seed."""
    return mean_std(a[s][key] - b[s][key] for s in a if s in b)


def time_ratio(a: dict, base: dict, parts=("wake", "sleep")) -> float:
    """Seconds per epoch of method ``a``'s ``parts`` (default the whole epoch, wake + sleep)
    relative to ``base``'s whole epoch: the median over the seeds of the ratio within each
    seed's runs."""
    return statistics.median(sum(a[s][p] for p in parts) / (base[s]["wake"] + base[s]["sleep"])
                             for s in a if s in base)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/mnist-10k"),
                        help="folder with the four MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=2, help="wake epochs of every method")
    parser.add_argument("--pretrain-epochs", type=int, default=None,
                        help="feedback pre-training epochs (default: the presets' "
                             "sleep_epochs_init, as in the paper: 10 for MNIST, 15 for the "
                             "autoencoder)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"methods to run (default: {' '.join(CLASSIFIERS)}; with "
                             f"--autoencoder: {' '.join(AUTOENCODERS)})")
    parser.add_argument("--autoencoder", action="store_true",
                        help="run the MNIST-autoencoder presets and compare test losses")
    parser.add_argument("--dtype", choices=("float64", "float32"), default=None,
                        help="override the presets' float32")
    parser.add_argument("--device", default=None,
                        help="'cpu', 'cuda' or 'cuda:N' for every method (default: the presets' "
                             "cpu)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-mnist-table"),
                        help="folder for the runs (one sub-folder per seed and method, "
                             "overwritten)")
    parser.add_argument("--seed", type=int, nargs="+", default=[42],
                        help="one or more seeds; with several, every number is the mean ± std "
                             "over them (Table 1 reports 5 seeds), differences are paired by "
                             "seed and time ratios are medians over the seeds")
    parser.add_argument("--reuse", action="store_true",
                        help="take the numbers of a method whose run folder already holds a "
                             "finished run with the same settings instead of training it again "
                             "(to split the bench over several processes, then tabulate)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice); 1 is faster on a machine "
                             "whose cores are busy with other work")
    args = parser.parse_args(argv)
    if len(set(args.seed)) != len(args.seed):
        print(f"error: --seed lists a seed twice ({' '.join(map(str, args.seed))}); give each "
              f"seed once", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    task = "mnist-autoencoder" if args.autoencoder else "mnist"
    methods = args.methods or (AUTOENCODERS if args.autoencoder else CLASSIFIERS)
    threads = torch.get_num_threads()
    pretrain = "as the presets" if args.pretrain_epochs is None else \
        f"{args.pretrain_epochs} epochs"
    where = f"{threads} threads" if not (args.device or "cpu").startswith("cuda") else \
        torch.cuda.get_device_name(args.device) if torch.cuda.is_available() else args.device
    seeds = ' '.join(map(str, args.seed))
    print(f"{task} presets on {args.data_dir}: {args.epochs} epochs each, feedback pre-training "
          f"{pretrain}, seed{'s' if len(args.seed) > 1 else ''} {seeds}, {where}, diagnostics "
          f"off", flush=True)

    runs = {}           # method -> {seed: numbers}
    try:
        for seed in args.seed:
            for method in methods:
                runs.setdefault(method, {})[seed] = train_method(args, task, method, seed)
    except DFCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(runs, args.epochs, len(args.seed), args.autoencoder)


def report(runs: dict, epochs: int, n_seeds: int, autoencoder: bool) -> int:
    """The table over the seeds, the arithmetic of the sleep passes, the comparisons with BP and
    with the simulated-sleep twins, and the RESULT line (means over the seeds)."""
    results = {m: across_seeds(by_seed) for m, by_seed in runs.items()}
    base, bp = results.get("bp"), runs.get("bp")
    several = n_seeds > 1
    error = "error" in next(iter(results.values()))["metric"]

    def shown(pair):
        mean, std = pair
        text = f"{mean:.2f}" if error else f"{mean:.4f}"
        if several:
            text += f"±{std:.2f}" if error else f"±{std:.4f}"
        return text + ("%" if error else "")

    print()
    w = max([12, *map(len, results)])
    c = 13 if several else 8
    print(f"{'method':{w}s} {'metric':>{c + 4}s} {'best ep':>7s} {'last-' + str(LAST_EPOCHS):>{c}s} "
          f"{'epochs':>6s} {'wake s/ep':>9s} "
          f"{'sleep s/ep':>10s} {'total s/ep':>10s} {'wake/BP':>8s} {'total/BP':>8s} "
          f"{'nfe/batch':>9s}")
    for method, r in results.items():
        total = r["wake"] + r["sleep"]
        rel = (f"{time_ratio(runs[method], bp, ('wake',)):8.1f} "
               f"{time_ratio(runs[method], bp):8.1f}" if base else f"{'-':>8s} {'-':>8s}")
        best = str(r["epochs"][0]) if not several else "-"
        print(f"{method:{w}s} {shown(r['value']):>{c + 4}s} {best:>7s} {shown(r['last']):>{c}s} "
              f"{epochs:6d} {r['wake']:9.2f} "
              f"{r['sleep']:10.2f} {total:10.2f} {rel} {r['nfe']:9.0f}")
    print(f"metric: {next(iter(results.values()))['metric']} at the epoch of best validation; "
          f"last-{LAST_EPOCHS}: its mean over the last {LAST_EPOCHS} epochs"
          + (f"; mean ± std over {n_seeds} seeds, seconds the median over them" if several
             else ""))
    sleeping = [m for m, r in results.items() if r["flops"][1] and r["sleep"] > 0]
    if base and sleeping:
        bp_flops = base["flops"][0]
        shares = []
        for m in sleeping:
            arithmetic = results[m]["flops"][1] / bp_flops
            shares.append(f"{m} {arithmetic:.1f}x at "
                          f"{arithmetic / (results[m]['sleep'] / base['wake']):.2f}")
        print(f"one epoch's sleep passes in matrix-product FLOPs relative to a BP epoch "
              f"({bp_flops / 1e6:.2f} MFLOP per sample), at this fraction of BP's FLOP/s: "
              f"{', '.join(shares)}")
    if autoencoder or not base:
        return 0

    def points(pair):
        mean, std = pair
        return f"{mean:+.2f}" + (f" ± {std:.2f}" if several else "")

    value = {m: r["value"][0] for m, r in results.items()}
    if {"dfc-ssa", "dfc"} <= set(results):
        print(f"wake epochs only (sleep passes excluded), relative to BP: dfc_ssa="
              f"{time_ratio(runs['dfc-ssa'], bp, ('wake',)):.2f} dfc="
              f"{time_ratio(runs['dfc'], bp, ('wake',)):.2f}")
        print(f"simulated sleep: bp={value['bp']:.2f} dfc_ssa={value['dfc-ssa']:.2f} "
              f"dfc={value['dfc']:.2f} "
              f"{'dfa=%.2f ' % value['dfa'] if 'dfa' in results else ''}"
              f"ssa_time_ratio={time_ratio(runs['dfc-ssa'], bp):.2f} "
              f"dfc_time_ratio={time_ratio(runs['dfc'], bp):.2f}")
    if several:
        print(f"differences in points, paired by seed: mean ± std over the {n_seeds} seeds")
    for m in (m for m in results if "-exp" in m):
        twin = runs.get(m.split("-exp")[0])
        vs_twin = (f", {points(paired(runs[m], twin, 'value'))} points from its simulated-sleep "
                   f"twin" if twin else "")
        last_twin = f", {points(paired(runs[m], twin, 'last'))} from the twin's" if twin else ""
        print(f"{m}: whole epoch {time_ratio(runs[m], bp):.2f}x BP's (wake "
              f"{time_ratio(runs[m], bp, ('wake',)):.2f}x, sleep passes "
              f"{time_ratio(runs[m], bp, ('sleep',)):.2f}x), "
              f"test error {points(paired(runs[m], bp, 'value'))} points from BP's{vs_twin}; "
              f"over the last {LAST_EPOCHS} epochs {points(paired(runs[m], bp, 'last'))} from "
              f"BP's{last_twin}")
    if {"dfc-ssa-exp", "dfc-exp"} <= set(results):
        print(f"RESULT bp={value['bp']:.2f} dfc_ssa_exp={value['dfc-ssa-exp']:.2f} "
              f"dfc_exp={value['dfc-exp']:.2f} "
              f"ssa_exp_time_ratio={time_ratio(runs['dfc-ssa-exp'], bp):.2f} "
              f"dfc_exp_time_ratio={time_ratio(runs['dfc-exp'], bp):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
