"""How far the DFC update moves with the wake solver's tolerance, preset by preset.

For every preset named, on its own network (layer sizes, activations, initialisation, dtype) and
controller, one minibatch of ``--batch`` inputs goes through the DFC rule (eq. 5 integrated over
the wake phase by the Rosenbrock-W solver) at each tolerance of ``--rtols`` (atol = rtol / 10),
and is held against a float64 solve at rtol 1e-8: vector-field evaluations, the angle between
the updates and their relative difference ‖g - g_ref‖ / ‖g_ref‖. The inputs are uniform in
[-0.5, 1.5] with random labels, or, with ``--run DIR``, the trained network of a run folder and
``--batch`` digits of its training split (``--data-dir`` as for training).

It measures what the presets' ``rtol`` / ``atol`` keep of the update (README: Solver tolerance of
the DFC presets) and ends with ``RESULT worst_angle_deg=<x> at_rtol=<loosest>``, the largest
angle at the loosest tolerance over the presets named.

    python bench/solver_tolerance.py [--presets mnist-dfc ...] [--rtols 1e-3 1e-2]
    python bench/solver_tolerance.py --run runs/mnist-dfc --data-dir ../shared/data/mnist-10k
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog.config.presets import preset_config  # noqa: E402
from dfc_analog.data import load_dataset  # noqa: E402
from dfc_analog.errors import DFCError  # noqa: E402
from dfc_analog.learning import ForwardSettings, forward_update  # noqa: E402
from dfc_analog.learning.updates import update_angle  # noqa: E402
from dfc_analog.model.dynamics import ControllerParams  # noqa: E402
from dfc_analog.model.network import DFCNetwork  # noqa: E402
from dfc_analog.runio import load_run  # noqa: E402
from dfc_analog.solvers.wake import SolverSettings  # noqa: E402

DFC_PRESETS = ["mnist-dfc", "mnist-dfc-fixed", "fashion-mnist-dfc", "fashion-mnist-dfc-fixed",
               "mnist-train-loss-dfc", "mnist-train-loss-dfc-fixed",
               "mnist-autoencoder-dfc-fixed", "mnist-autoencoder-dfc"]
REFERENCE = SolverSettings("rosenbrock", 1e-8, 1e-9)


def minibatch(cfg, batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, cfg.layer_sizes[0], generator=gen, dtype=torch.float64) * 2 - 0.5
    if cfg.loss == "cross_entropy":
        return x, torch.randint(0, cfg.layer_sizes[-1], (batch,), generator=gen)
    return x, x.clone()          # the autoencoder's target is its input


def compare(name: str, cfg, net: DFCNetwork, x, y, rtols) -> list:
    """(rtol, evaluations, angle°, relative difference) per tolerance, against REFERENCE."""
    params = ControllerParams.from_config(cfg)

    def settings(solver):
        return ForwardSettings("dfc", params, solver, cfg.t_end, cfg.loss, cfg.loss_reduction,
                               cfg.target_stepsize)

    def cast(t, dtype):
        return t.to(dtype) if t.is_floating_point() else t

    net64 = copy.deepcopy(net).double()
    ref = forward_update(net64, cast(x, torch.float64), cast(y, torch.float64),
                         settings(REFERENCE))
    rows = []
    for rtol in rtols:
        upd = forward_update(net, cast(x, net.dtype), cast(y, net.dtype),
                             settings(SolverSettings("rosenbrock", rtol, rtol / 10)))
        angle, diff = update_angle(ref.gW + ref.gb, upd.gW + upd.gb)
        rows.append((rtol, upd.wake.nfe, angle, diff))
    cells = "  ".join(f"rtol {r:g}: {n:4d} evaluations {a:6.3f}° {d:.1e}" for r, n, a, d in rows)
    print(f"{name:34s} T = {cfg.t_end:<6g} {cells}  (reference {ref.wake.nfe} evaluations)",
          flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=DFC_PRESETS, help="presets to measure")
    ap.add_argument("--rtols", nargs="+", type=float, default=[1e-3, 1e-2],
                    help="relative tolerances to compare (atol = rtol / 10)")
    ap.add_argument("--batch", type=int, default=128, help="inputs per minibatch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", help="a run folder: its trained network and training digits "
                                  "instead of the presets' initial networks")
    ap.add_argument("--data-dir", help="folder with the run's dataset files (with --run)")
    ap.add_argument("--threads", type=int, help="torch threads")
    args = ap.parse_args(argv)
    if not all(0 < r < 1 for r in args.rtols):
        ap.error(f"every tolerance must lie between 0 and 1, got {args.rtols}")
    if args.batch < 1:
        ap.error(f"--batch must be at least 1, got {args.batch}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = []
        if args.run:
            cfg, net = load_run(args.run)
            if args.data_dir:
                cfg = cfg.replace(data_dir=args.data_dir)
            data = load_dataset(cfg, download=False).train
            idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
            idx = idx[:args.batch]
            rows += compare(args.run, cfg, net, data.x[idx], data.y[idx], args.rtols)
        else:
            for name in args.presets:
                cfg = preset_config(name)
                x, y = minibatch(cfg, args.batch, args.seed)
                rows += compare(name, cfg, DFCNetwork.from_config(cfg), x, y, args.rtols)
    except DFCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loosest = max(args.rtols)
    worst = max(a for r, _, a, _ in rows if r == loosest)
    print(f"RESULT worst_angle_deg={worst:.3f} at_rtol={loosest:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
