"""One MNIST minibatch of DFC-SSA with the expected feedback update (single-phase schedule)
against one BP minibatch, part by part.

Both run from their presets (``mnist-dfc-ssa-exp-single``, ``mnist-bp``: 784-256-256-256-10,
tanh, float32, minibatch 128) on one synthetic MNIST-sized minibatch, through the training
loop's own functions, alternately, and the medians over ``--repeats`` pairs are printed:

  - BP: the gradient (autograd) and the optimizer step (``apply_update``);
  - DFC-SSA, single phase: the steps of ``single_phase_ssa_update`` timed one by one (the
    feed-forward pass, J and J Σ² Jᵀ with J Q, Lemma 1's steady state and eq. (5), the expected
    feedback update), then the two optimizer steps;

each part in milliseconds and in BP minibatches, then the matrix-product arithmetic of both
(``mnist_table.product_flops`` for BP; for DFC-SSA the forward pass, J, J Σ² Jᵀ, J Q, Q u, the
steady-state sweep, eq. (5)'s outer products, Σ_b J_bᵀ Y_b and the n_L-sized algebra), and
ends with

    RESULT ssa_single_vs_bp=<x> arithmetic_ratio=<y>

Alternating the two keeps a busy or throttled machine from favouring either.
``--adam fused`` builds every optimizer with torch's fused Adam kernel instead of the trainer's
``foreach`` form (same formula; float32 steps differ by one rounding). ``--overlap`` also
times the single phase with its two independent updates at once: the feedback update (the
expected update, then the Q step after the W step) on a second thread while the forward
update (Lemma 1, eq. (5), the W step) runs, which gives DFC-SSA two cores against BP's one.

    python bench/ssa_minibatch.py [--repeats 200] [--threads 1] [--adam fused] [--overlap]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfc_analog.config.presets import preset_config  # noqa: E402
from dfc_analog.config.seeds import generator  # noqa: E402
from dfc_analog.learning.forward import ForwardSettings, forward_update  # noqa: E402
from dfc_analog.learning.sleep import SleepParams  # noqa: E402
from dfc_analog.learning.sleep_expected import (expected_update_from_jacobian,  # noqa: E402
                                                sleep_jacobian)
from dfc_analog.model.network import DFCNetwork  # noqa: E402
from dfc_analog.training.loop import (apply_feedback_update, apply_update,  # noqa: E402
                                      make_feedback_optimizer, make_optimizer)

sys.path.insert(0, str(ROOT / "bench"))
from mnist_table import layer_products, noise_covariance, product_flops  # noqa: E402


def ssa_flops(cfg) -> int:
    """Matrix-product FLOPs per sample of the single-phase DFC-SSA minibatch of ``cfg``, the
    Lyapunov solve's own products left out (32 n_L³ + 48 n_L³ per doubling, as
    ``product_flops``)."""
    n = cfg.layer_sizes
    forward, _, hidden_above_first = layer_products(n)
    n_L, N = n[-1], sum(n[1:])
    jacobian = n_L * hidden_above_first
    n_L_products = 2 * N * n_L ** 2                     # J Q and Σ_b J_bᵀ Y_b: one each
    sweep = forward - 2 * n[0] * n[1]                   # layer 1's basal part is the forward's
    outer = forward                                     # eq. (5): Δv_i r_{i-1}ᵀ
    control = 2 * N * n_L                               # Lemma 1's Δv = Q u
    algebra = 12 * n_L ** 3                             # n_L-sized products around the Lyapunov
    return forward + jacobian + noise_covariance(cfg) + 2 * n_L_products + sweep + outer + \
        control + algebra


def overlapped_minibatch(cfg, net, x, y, settings: ForwardSettings, sleep: SleepParams,
                         opt_w, opt_q, pool: ThreadPoolExecutor, out: tuple = None) -> None:
    """One single-phase DFC-SSA minibatch with its two updates at once: the feedback update
    (the expected update from J, J Σ² Jᵀ and J Q) on ``pool``'s thread while this one takes
    Lemma 1's forward update and the W step; the Q step last. Neither update reads what the
    other writes, so the weights are those of the sequential minibatch."""
    ff = net.feedforward(x)
    J, JSJ = sleep_jacobian(net, x, sleep, out, ff)
    JQ = net.times_feedback(J)
    g_Q = pool.submit(expected_update_from_jacobian, net, J, JSJ, sleep, JQ)
    apply_update(cfg, net, opt_w, forward_update(net, x, y, settings, loop_gain=JQ,
                                                 feedforward=ff))
    apply_feedback_update(cfg, net, opt_q, g_Q.result())


def fused(opt: torch.optim.Adam) -> torch.optim.Adam:
    """The same Adam (parameters and settings) as torch's fused kernel."""
    return torch.optim.Adam(opt.param_groups[0]["params"],
                            **dict(opt.defaults, foreach=None, fused=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="minibatch pairs timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--adam", choices=("foreach", "fused"), default="foreach",
                        help="Adam's implementation for both methods (default: the trainer's "
                             "foreach form)")
    parser.add_argument("--overlap", action="store_true",
                        help="also time the single phase with its forward and feedback updates "
                             "on two threads at once")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1.")
    if args.overlap and args.threads > 1:
        parser.error("--overlap gives each update one core; use it with --threads 1 (more "
                     "threads oversubscribe the cores and slow every timing).")
    torch.set_num_threads(args.threads)

    cfg, bcfg = preset_config("mnist-dfc-ssa-exp-single"), preset_config("mnist-bp")
    net = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    bnet = DFCNetwork.from_config(bcfg, generator("network", bcfg.seed))
    settings, bp_settings = ForwardSettings.from_config(cfg), ForwardSettings.from_config(bcfg)
    sleep = SleepParams.from_config(cfg)
    opt_w, opt_q = make_optimizer(cfg, net), make_feedback_optimizer(cfg, net, cfg.fb_lr)
    opt_bp = make_optimizer(bcfg, bnet)
    if args.adam == "fused":
        opt_w, opt_q, opt_bp = (fused(o) for o in (opt_w, opt_q, opt_bp))
    B, n = cfg.batch_size, cfg.layer_sizes
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, n[0], generator=gen, dtype=net.dtype)
    x = x * (torch.rand(B, n[0], generator=gen, dtype=net.dtype) < 0.2)   # MNIST-like: 80 % zero
    y = torch.randint(n[-1], (B,), generator=gen)
    J_buf = torch.empty(B, n[-1], sum(n[1:]), dtype=net.dtype)
    JSJ_buf = torch.empty(B, n[-1], n[-1], dtype=net.dtype)

    def bp() -> list:
        t0 = time.perf_counter()
        upd = forward_update(bnet, x, y, bp_settings)
        t1 = time.perf_counter()
        apply_update(bcfg, bnet, opt_bp, upd)
        return [t1 - t0, time.perf_counter() - t1]

    def ssa() -> list:
        t = [time.perf_counter()]
        ff = net.feedforward(x)
        t.append(time.perf_counter())
        J, JSJ = sleep_jacobian(net, x, sleep, (J_buf, JSJ_buf), ff)
        JQ = net.times_feedback(J)
        t.append(time.perf_counter())
        upd = forward_update(net, x, y, settings, loop_gain=JQ, feedforward=ff)
        t.append(time.perf_counter())
        g_Q = expected_update_from_jacobian(net, J, JSJ, sleep, JQ)
        t.append(time.perf_counter())
        apply_update(cfg, net, opt_w, upd)
        apply_feedback_update(cfg, net, opt_q, g_Q)
        t.append(time.perf_counter())
        return [b - a for a, b in zip(t, t[1:])]

    pool = ThreadPoolExecutor(1)

    def ssa_overlapped() -> float:
        t0 = time.perf_counter()
        overlapped_minibatch(cfg, net, x, y, settings, sleep, opt_w, opt_q, pool,
                             (J_buf, JSJ_buf))
        return time.perf_counter() - t0

    variants = (bp, ssa, ssa_overlapped) if args.overlap else (bp, ssa)
    for _ in range(5):
        for f in variants:
            f()
    bp_times, ssa_times, overlapped = [], [], []
    for _ in range(args.repeats):
        bp_times.append(bp())
        ssa_times.append(ssa())
        if args.overlap:
            overlapped.append(ssa_overlapped())
    pool.shutdown()
    bp_parts = [statistics.median(c) for c in zip(*bp_times)]
    ssa_parts = [statistics.median(c) for c in zip(*ssa_times)]
    bp_total = statistics.median(sum(t) for t in bp_times)
    ssa_total = statistics.median(sum(t) for t in ssa_times)
    print(f"784-256-256-256-10, minibatch {B}, {net.dtype}, {args.threads} thread(s), {args.adam} "
          f"Adam, medians of {args.repeats} alternating {'triples' if args.overlap else 'pairs'}")
    print(f"  BP:  {bp_total * 1e3:6.2f} ms  (gradient {bp_parts[0] * 1e3:.2f}, optimizer step "
          f"{bp_parts[1] * 1e3:.2f})")
    names = ("feed-forward pass", "J, J Σ² Jᵀ and J Q", "Lemma 1 and eq. (5)",
             "expected feedback update", "optimizer steps (W, Q)")
    print(f"  DFC-SSA, single phase: {ssa_total * 1e3:6.2f} ms = {ssa_total / bp_total:.2f} BP "
          f"minibatches")
    for name, part in zip(names, ssa_parts):
        print(f"    {name:26s} {part * 1e3:6.2f} ms  {part / bp_total:5.2f} BP")
    if args.overlap:
        t = statistics.median(overlapped)
        print(f"  DFC-SSA, single phase, the two updates overlapped on two threads: "
              f"{t * 1e3:6.2f} ms = {t / bp_total:.2f} BP minibatches (two cores against BP's one)")
    bp_flops, ssa_f = product_flops(bcfg)[0], ssa_flops(cfg)
    print(f"  matrix-product arithmetic per sample: BP {bp_flops / 1e6:.2f} MFLOP, DFC-SSA single "
          f"phase {ssa_f / 1e6:.2f} MFLOP ({ssa_f / bp_flops:.2f}x)")
    print(f"RESULT ssa_single_vs_bp={ssa_total / bp_total:.2f} "
          f"arithmetic_ratio={ssa_f / bp_flops:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
