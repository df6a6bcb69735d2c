"""Wake-phase cost: dfc_analog's DFC update against the authors' simulation scheme, in one run.

Network 784-256-256-256-10 (tanh, linear output, cross-entropy), batch 128, the MNIST DFC
settings of the authors' configs (α = 0.001389, k_p = 2, τ_v = 0.2, λ = 0.07794, T = 20 τ_u).

baseline  the authors' scheme: forward Euler, Δt = 0.02, 1000 stored points (999 steps), float64,
          proactive controller and instantaneous transmission, W_1 x recomputed each step, every
          compartment's trajectory buffered, and the eq. (5) update summed afterwards.
ours      ``dfc_analog.learning.forward_update`` with method 'dfc' (the default adaptive solver,
          Rosenbrock-W ROS34PW2; eq. (5) by quadrature over the accepted steps; float32).

Prints both timings, peak memory (ours also for a 4x longer phase, to show that it does not grow
with simulated time), the angle between the two updates, and one closing line
``RESULT speedup=<x> angle_deg=<y> mem_ratio=<ours/baseline>``. Timings are the best of
``--repeats`` interleaved rounds: one baseline minibatch, then ``--batches`` consecutive
minibatches of ours (seconds per minibatch, the throughput of a training loop); memory is
measured in separate runs.

    python bench/wake_phase.py [--repeats 3] [--dtype float32] [--solver rosenbrock] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfc_analog.model.dynamics import ControllerParams  # noqa: E402
from dfc_analog.learning import ForwardSettings, forward_update, output_target  # noqa: E402
from dfc_analog.model.network import DFCNetwork, resolve_dtype  # noqa: E402
from dfc_analog.solvers.wake import SolverSettings  # noqa: E402

SIZES = [784, 256, 256, 256, 10]
ALPHA, K_P, TAU_V, LAMBDA, T_END, DT_BASE = 0.001389, 2.0, 0.2, 0.07794, 20.0, 0.02


def baseline_update(net: DFCNetwork, x, y):
    """The authors' scheme (reference §1.3, §1.5), float64, trajectory buffered."""
    L = net.num_layers
    W = [w.detach().double() for w in net.W]
    b = [c.detach().double() for c in net.b]
    Q = [q.detach().double() for q in net.Q]
    x = x.double()
    phi = [lambda v: torch.tanh(v)] * (L - 1) + [lambda v: v]
    # feed-forward pass and target
    v = []
    r = x
    for i in range(L):
        v.append(r @ W[i].T + b[i])
        r = phi[i](v[-1])
    r_star, _ = output_target(r, y, "cross_entropy", "mean", LAMBDA)
    tmax = int(round(T_END / DT_BASE))
    B = x.shape[0]
    buf = {k: [torch.empty(tmax, B, n, dtype=torch.float64, device=x.device) for n in SIZES[1:]]
           for k in ("v", "vB", "vA", "r")}
    for i in range(L):
        buf["v"][i][0] = v[i]
        buf["vB"][i][0] = v[i]
        buf["vA"][i][0] = 0.0
        buf["r"][i][0] = phi[i](v[i])
    u = torch.zeros(B, SIZES[-1], dtype=torch.float64, device=x.device)
    u_int = torch.zeros_like(u)
    for k in range(tmax - 1):
        e = r_star - buf["r"][L - 1][k]
        u_int = u_int + DT_BASE * (e - ALPHA * u)          # leak on the total u
        u = u_int + K_P * e                                 # proactive: used at step k+1
        r_prev = x
        for i in range(L):
            vB = r_prev @ W[i].T + b[i]                     # instantaneous transmission
            vA = u @ Q[i].T
            vk = buf["v"][i][k]
            vn = vk + DT_BASE / TAU_V * (vA + vB - vk)
            buf["v"][i][k + 1] = vn
            buf["vB"][i][k + 1] = vB
            buf["vA"][i][k + 1] = vA
            r_prev = phi[i](vn)
            buf["r"][i][k + 1] = r_prev
    gW, gb = [], []
    for i in range(L):
        delta = (phi[i](buf["v"][i]) - phi[i](buf["vB"][i])).reshape(tmax * B, -1)
        pre = x.expand(tmax, B, -1) if i == 0 else buf["r"][i - 1]
        gW.append(-2.0 / (B * tmax) * delta.T @ pre.reshape(tmax * B, -1))
        gb.append(-2.0 / (B * tmax) * delta.sum(0))
    return gW, gb


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms (CPU runs)."""

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self._stop = False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    @staticmethod
    def _rss():
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self):
        return (self.peak - self.base) / 2**20


def peak_memory(fn, device):
    """Peak memory of one call, MiB above the level at entry (a separate, untimed run: the
    sampling thread would slow a Python-driven loop down)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        return out, (torch.cuda.max_memory_allocated() - before) / 2**20
    with PeakRSS() as mem:
        out = fn()
    return out, mem.mib


def seconds(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def flatten(gW, gb):
    return torch.cat([t.double().cpu().reshape(-1) for t in list(gW) + list(gb)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repetitions of each scheme, interleaved; the best of each counts")
    ap.add_argument("--batches", type=int, default=4,
                    help="consecutive minibatches per timing of ours (seconds per minibatch)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--solver", default=SolverSettings.method)
    ap.add_argument("--rtol", type=float, default=SolverSettings.rtol)
    ap.add_argument("--atol", type=float, default=SolverSettings.atol)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline-device", default="cpu",
                    help="device of the baseline (the authors' scheme)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile our wake phase (torch.profiler, one minibatch after a "
                         "warm-up) and print its N most expensive operators by self CPU time")
    args = ap.parse_args()

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    net64 = DFCNetwork(SIZES, ["tanh"] * 3 + ["linear"], dtype=torch.float64, generator=gen)
    x64 = torch.randn(128, SIZES[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, SIZES[-1], (128,), generator=gen)

    params = ControllerParams(tau_v=TAU_V, alpha=ALPHA, k_p=K_P, leak="total")
    solver = SolverSettings(args.solver, args.rtol, args.atol)
    net = copy.deepcopy(net64).to(dtype=resolve_dtype(args.dtype), device=device)
    x = x64.to(dtype=resolve_dtype(args.dtype), device=device)

    def ours(t_end=T_END):
        settings = ForwardSettings("dfc", params, solver, t_end, "cross_entropy", "mean", LAMBDA)
        upd = forward_update(net, x, y.to(device), settings)
        return upd.gW, upd.gb, upd.wake.nfe

    base_device = torch.device(args.baseline_device)
    base_net, base_x, base_y = (t.to(base_device) for t in (copy.deepcopy(net64), x64, y))

    def baseline():
        return baseline_update(base_net, base_x, base_y)

    (bW, bb), m_base = peak_memory(baseline, base_device)
    (oW, ob, nfe), m_ours = peak_memory(ours, device)
    (_, _, nfe_long), m_long = peak_memory(lambda: ours(4 * T_END), device)
    t_base, t_ours = [], []
    for _ in range(args.repeats):        # interleaved, so that machine noise hits both alike
        t_base.append(seconds(baseline, base_device))
        # throughput: consecutive minibatches, as in training (the first one after the
        # baseline's 4 GiB of buffers pays for fresh memory pages)
        t_ours.append(seconds(lambda: [ours() for _ in range(args.batches)], device)
                      / args.batches)
    t_base, t_ours = min(t_base), min(t_ours)
    t_long = seconds(lambda: ours(4 * T_END), device)

    a, b = flatten(oW, ob), flatten(bW, bb)
    angle = math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm()))))))
    speedup = t_base / t_ours
    print(f"network {'-'.join(map(str, SIZES))}, batch 128, T = {T_END} tau_u, "
          f"{torch.get_num_threads()} threads")
    print(f"{'':10s} {'seconds':>9s} {'peak MiB':>9s}  scheme")
    print(f"{'baseline':10s} {t_base:9.2f} {m_base:9.0f}  authors' Euler, dt {DT_BASE}, "
          f"{int(T_END / DT_BASE)} points, float64, buffered, {args.baseline_device}")
    print(f"{'ours':10s} {t_ours:9.2f} {m_ours:9.0f}  {args.solver} rtol {args.rtol} atol "
          f"{args.atol}, {nfe} evaluations, {args.dtype}, {args.device}")
    print(f"{'ours, 4T':10s} {t_long:9.2f} {m_long:9.0f}  the same for T = {4 * T_END:g} tau_u, "
          f"{nfe_long} evaluations: memory does not grow with simulated time")
    print(f"throughput ratio {speedup:.1f}x, angle between updates {angle:.3f} deg")
    if args.profile > 0:
        from torch.profiler import ProfilerActivity, profile
        ours()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile,
                                        max_name_column_width=40))
    print(f"RESULT speedup={speedup:.2f} angle_deg={angle:.3f} "
          f"mem_ratio={m_ours / max(m_base, 1e-9):.4f}")


if __name__ == "__main__":
    main()
