"""Robustness of trained networks on PCM chips, and the deployment throughput.

Throughput (``--throughput-only`` prints only this): R realisations of the MNIST-size network
784-256-256-256-10 (Xavier weights, Q_i = Π W_kᵀ) on the ``pcm`` preset, each chip's devices
drawn (``realise``, seed stream 'realisation') and its settled feed-forward state with the
amplifier effects evaluated (the folded closed form of HardwareModel.feedforward, float32) on
2,000 MNIST-like inputs (in [0, 1], 80 % zeros; 0.5 V per unit); printed as realisations per second, beside the
same evaluation one chip at a time through HardwareModel.feedforward (float64) as the baseline.

Robustness (the default): on the shared 10k MNIST digits (../shared/data/mnist-10k; skipped when
absent), DFC-SSA with fixed feedback Q_i = Π W_kᵀ (preset mnist-dfc-ssa-fixed) and BP (mnist-bp)
are each trained ideal and hardware-aware on ``pcm`` chip ``--train-chip`` (--hardware pcm;
``--epochs``, default 3), then every run is deployed on ``--realisations`` other chips of
``pcm`` (seeds from ``--first-chip``) read t = 1 s and t = 1 day after programming: test error mean ± std over the chips, the worst chip, the yield within
``--yield-within`` points of the ideal run's own test error, the share of clipping chips. Ends
with

    RESULT dfc_hw=<err%> bp_hw=<err%> dfc_ideal_on_hw=<err%> bp_ideal_on_hw=<err%>
           realisations_per_s=<x>

(the mean test error over the chips at t = 1 day, in %).

    .venv/bin/python bench/robustness.py [--throughput-only] [--epochs E] [--realisations R]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.model.deployment import deploy
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork

ROOT = Path(__file__).resolve().parents[1]
SIZES = [784, 256, 256, 256, 10]
V_SCALE = 0.5           # V per model unit, as in bench/hardware.py


def throughput(realisations: int, samples: int = 2000, workers: int = 2,
               baseline: int = 4) -> dict:
    """Realisations per second of :func:`deploy` (float32) and of the one-chip-at-a-time
    baseline on ``baseline`` chips."""
    gen = torch.Generator().manual_seed(0)
    net = DFCNetwork(SIZES, ["tanh"] * 3 + ["linear"], generator=gen)
    x = torch.rand(samples, SIZES[0], generator=gen) * \
        (torch.rand(samples, SIZES[0], generator=gen) < 0.2)
    y = torch.randint(SIZES[-1], (samples,), generator=gen)
    spec = load_spec("pcm")
    start = time.perf_counter()
    result = deploy(net, spec, range(realisations), x, y, "cross_entropy", workers=workers,
                    v_scale=V_SCALE)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for seed in range(baseline):
            model = HardwareModel(realise_network(net, spec, seed, V_SCALE), ControllerParams())
            try:
                model.feedforward(x)
            except ConfigError:         # a clipping chip: its state was computed all the same
                pass
    baseline_s = time.perf_counter() - start
    return {"realisations": realisations, "samples": samples, "batched_s": batched_s,
            "per_s": realisations / batched_s, "baseline_per_s": baseline / baseline_s,
            "clipped": float(result.clipped.double().mean()),
            "error_mean": float(result.error.mean())}


def print_throughput(t: dict) -> None:
    print(f"deployment throughput, {SIZES} on pcm, {t['samples']} inputs: "
          f"{t['realisations']} chips in {t['batched_s']:.1f} s = {t['per_s']:.2f} chips/s "
          f"(one at a time through HardwareModel.feedforward: {t['baseline_per_s']:.2f} chips/s, "
          f"x{t['per_s'] / t['baseline_per_s']:.1f}); 1000 chips would take "
          f"{1000 / t['per_s']:.0f} s; clipped {100 * t['clipped']:.1f} %")


def trained_runs(args) -> dict:
    """name -> run folder of the four trainings (module docstring), trained here."""
    from dfc_analog import runio
    from dfc_analog.config.presets import preset_config
    from dfc_analog.training.loop import run_training

    runs = {}
    for method, preset in (("dfc", "mnist-dfc-ssa-fixed"), ("bp", "mnist-bp")):
        for hw in ("ideal", "hw"):
            cfg = preset_config(preset, data_dir=args.data_dir, epochs=args.epochs,
                                diagnostics=False, seed=args.seed,
                                hardware="pcm" if hw == "hw" else "",
                                hardware_seed=args.train_chip, hardware_v_scale=args.v_scale)
            out = Path(args.out) / f"{method}-{hw}"
            resume = (out / runio.CHECKPOINT).exists()      # a finished run is only read
            if resume:
                runio.check_same_run(out, cfg)
            start = time.perf_counter()
            rows = run_training(cfg, out, resume=resume, progress=False)
            how = "found finished in its folder" if resume else \
                f"trained in {time.perf_counter() - start:.0f} s"
            print(f"{out.name}: {args.epochs} epochs {how}; test error of the programmed "
                  f"weights on the ideal network {rows[-1]['test_error']:.2f} %", flush=True)
            runs[f"{method}-{hw}"] = out
    return runs


def robustness(args, runs: dict) -> dict:
    """Every run on ``args.realisations`` pcm chips at each drift time: a table row each."""
    from dfc_analog.data import load_dataset
    from dfc_analog.runio import load_run
    from dfc_analog.sweep.deploy import spec_variant
    from dfc_analog.training.loop import evaluate_split

    chips = range(args.first_chip, args.first_chip + args.realisations)
    table = {}
    for name, run in runs.items():
        cfg, net = load_run(run, device="cpu")
        test = load_dataset(cfg).test
        _, ideal, _ = evaluate_split(net, test.x, test.y, cfg.loss)
        for label, t in DRIFT_TIMES:
            spec = spec_variant(load_spec("pcm"), "synapse.drift_time", t)
            res = deploy(net, spec, chips, test.x, test.y, cfg.loss, workers=args.workers,
                         v_scale=args.deploy_v_scale, params=ControllerParams.from_config(cfg))
            ok = res.error[~res.clipped]
            nan = float("nan")
            table[name, label] = {
                "ideal": ideal, "mean": float(ok.mean()) if len(ok) else nan,
                "std": float(ok.std()) if len(ok) > 1 else nan,
                "worst": float(ok.max()) if len(ok) else nan,
                "clipped": float(res.clipped.double().mean()),
                "yield": float(((res.error <= ideal + args.yield_within) &
                                ~res.clipped).double().mean())}
    return table


def print_table(table: dict, args) -> None:
    print(f"\ntest error (%) of each run on {args.realisations} pcm chips (seeds "
          f"{args.first_chip}..{args.first_chip + args.realisations - 1}, {args.deploy_v_scale:g} "
          f"V per unit), mean ± std over the chips, worst chip, yield within {args.yield_within:g} "
          f"points of the run's ideal error, share of clipping chips:")
    print(f"| run | ideal | {' | '.join(f'pcm t = {l}' for l, _ in DRIFT_TIMES)} |")
    print("| --- | --- |" + " --- |" * len(DRIFT_TIMES))
    for name in dict.fromkeys(n for n, _ in table):
        cells = []
        for label, _ in DRIFT_TIMES:
            r = table[name, label]
            cells.append(f"{r['mean']:.2f} ± {r['std']:.2f} (worst {r['worst']:.2f}, yield "
                         f"{100 * r['yield']:.0f} %, clipped {100 * r['clipped']:.0f} %)")
        print(f"| {RUN_NAMES[name]} | {table[name, DRIFT_TIMES[0][0]]['ideal']:.2f} | "
              f"{' | '.join(cells)} |")


DRIFT_TIMES = (("1 s", 1.0), ("1 day", 86400.0))
RUN_NAMES = {"dfc-ideal": "DFC-SSA (fixed Q) trained ideal",
             "dfc-hw": "DFC-SSA (fixed Q) trained on pcm",
             "bp-ideal": "BP trained ideal", "bp-hw": "BP trained on pcm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the deployment throughput")
    parser.add_argument("--throughput-realisations", type=int, default=64, metavar="R",
                        help="chips of the throughput measurement (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="threads drawing the chips")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/mnist-10k"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every training")
    parser.add_argument("--realisations", type=int, default=20, metavar="R",
                        help="chips each run is deployed on, per drift time (default 20)")
    parser.add_argument("--first-chip", type=int, default=1000,
                        help="seed of the first deployment chip (default 1000)")
    parser.add_argument("--train-chip", type=int, default=0,
                        help="the chip the hardware-aware runs train on (default 0)")
    parser.add_argument("--v-scale", type=float, default=0.25,
                        help="volts per model unit on the training chip (default 0.25)")
    parser.add_argument("--deploy-v-scale", type=float, default=0.05,
                        help="volts per model unit on the deployment chips (default 0.05: the "
                             "trained MNIST networks' somas reach 16 units, inside the ±1.4 V "
                             "rails)")
    parser.add_argument("--yield-within", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-robustness"),
                        help="the runs' folder; finished runs with the same settings there are "
                             "read, unfinished ones continued")
    args = parser.parse_args()
    torch.set_num_threads(2)
    t = throughput(args.throughput_realisations, workers=args.workers)
    print_throughput(t)
    if args.throughput_only:
        print(f"RESULT realisations_per_s={t['per_s']:.3g}")
        return
    if not (Path(args.data_dir) / "train-images-idx3-ubyte.gz").exists() and \
            not (Path(args.data_dir) / "train-images-idx3-ubyte").exists():
        print(f"skipped: no MNIST digits in {args.data_dir}")
        print(f"RESULT realisations_per_s={t['per_s']:.3g}")
        return
    print(f"MNIST from {args.data_dir}, {args.epochs} epochs per training, seed {args.seed}; "
          f"hardware-aware runs on pcm chip {args.train_chip}; shared machine", flush=True)
    table = robustness(args, trained_runs(args))
    print_table(table, args)
    day = DRIFT_TIMES[-1][0]
    print(f"RESULT dfc_hw={table['dfc-hw', day]['mean']:.2f} "
          f"bp_hw={table['bp-hw', day]['mean']:.2f} "
          f"dfc_ideal_on_hw={table['dfc-ideal', day]['mean']:.2f} "
          f"bp_ideal_on_hw={table['bp-ideal', day]['mean']:.2f} "
          f"realisations_per_s={t['per_s']:.3g}")


if __name__ == "__main__":
    main()
