"""The sleep phase: feedback-weight learning from noise (paper §5, eqs. 12 and 13).

The output target is the feed-forward output itself, r_L* = r_L^-, and every layer receives noise,
which the controller counteracts; the control u then carries the noise as propagated through the
network, i.e. information on the Jacobian J. The noise enters the apical compartment through its own
low-pass filter τ_A (as in the authors' experiments):

    τ_A dv_A,i = (-v_A,i + Q_i u) dt + σ_i dW_i
    τ_v dv_i   = (-v_i + v_B,i + v_A,i) dt                       (eq. 12 with the noise in v_A)
    u = u_int + k_p e,  τ_u du_int/dt = e - α u_int  (or e - α u, ``leak='total'``)

integrated with Euler–Maruyama (instantaneous transmission; the apical compartment sees the control
of the previous step). Eq. (13), τ_Q dQ_i/dt = -v_A,i uᵀ - β Q_i, is accumulated along the way; its
time average, scaled by 1/σ̂² with σ̂ = max(σ, 0.01) as in the authors' code, is returned as a
gradient-like update, and the decay β is left to the optimizer's weight decay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfc_analog.errors import ConfigError, DivergenceError
from dfc_analog.model.network import DFCNetwork, phi_departure, small_tanh_, tanh_departure
from dfc_analog.solvers.wake import STATE_LIMIT


@dataclass(frozen=True)
class SleepParams:
    """The constants of a sleep phase (the paper's Fig. 3 values by default)."""

    tau_v: float = 0.01
    tau_u: float = 1.0
    tau_a: float = 0.3
    alpha: float = 0.25
    k_p: float = 0.1
    sigma: float = 0.01
    sigma_output: float = 0.01
    dt: float = 0.002
    t_end: float = 0.1
    leak: str = "integral"

    @classmethod
    def from_config(cls, cfg) -> "SleepParams":
        return cls(tau_v=cfg.tau_v_fb, tau_u=cfg.tau_u, tau_a=cfg.tau_a_fb, alpha=cfg.alpha_fb,
                   k_p=cfg.k_p_fb, sigma=cfg.sigma_fb, sigma_output=cfg.sigma_fb_output,
                   dt=cfg.dt_fb, t_end=cfg.t_end_fb, leak=cfg.leak)

    @property
    def sigma_hat(self) -> float:
        """σ̂ = max(σ, 0.01), by whose square the update is divided (as in the authors' code)."""
        return max(self.sigma, 0.01)

    @property
    def steps(self) -> int:
        """The Euler-Maruyama steps of the phase: its length is steps · dt."""
        return max(1, int(round(self.t_end / self.dt)))


# On CUDA one sleep phase is some 1,500 small kernels, each launched from Python; a captured CUDA
# graph replays them without that overhead (3.4 times faster on an H200). One graph per shape.
CUDA_GRAPHS = True
_graphs: dict = {}


@torch.no_grad()
def feedback_update(net: DFCNetwork, x: torch.Tensor, p: SleepParams,
                    generator: torch.Generator | None, noise: torch.Tensor | None = None) -> list:
    """One sleep phase over a minibatch: gradient-like updates g_Q_i = ⟨v_A,i uᵀ⟩ / σ̂² per layer.

    A step in the direction -g_Q_i is the anti-Hebbian rule of eq. (13) without its decay term.
    The standard-normal draws ξ (p.steps, B, Σ n_i) come from ``generator`` (float32), or are
    ``noise`` itself (a given path, e.g. the one a circuit's noise sources play,
    :mod:`dfc_analog.circuit.learning`).
    All layers share one (B, Σ n_i) state, so the per-step work is a few whole-state operations
    plus, in layer order (instantaneous transmission), one product W_i Δr_{i-1} and one φ_i.
    """
    L = net.num_layers
    v_ff, r_ff = net.feedforward(x)
    a_v = p.dt / p.tau_v
    inputs = {"v0": torch.cat(v_ff, dim=1), "r0": torch.cat(r_ff, dim=1),
              "QT": net.feedback_matrix().T.contiguous(),
              **{f"WT{i}": net.W[i].T.mul(a_v) for i in range(1, L)}}
    steps = p.steps
    shape = (steps, x.shape[0], sum(net.layer_sizes[1:]))
    # Euler-Maruyama increments σ_i √dt / τ_A ξ, ξ drawn in float32 (four times faster than
    # float64 on CPU; noise needs no more digits), held in the state's dtype
    if noise is not None:
        if tuple(noise.shape) != shape:
            raise ConfigError(f"the sleep-phase noise must have shape {shape}, got "
                              f"{tuple(noise.shape)}.")
        acc, worst = _simulate(net, inputs, noise.to(x.device, copy=True), p)
    elif x.is_cuda and CUDA_GRAPHS:
        acc, worst = _replay(net, inputs, shape, p, generator)
    else:
        acc, worst = _simulate(net, inputs, draw_noise(shape, generator, x.device), p)
    worst = float(worst)
    if not math.isfinite(worst) or worst > STATE_LIMIT:
        raise DivergenceError(f"the sleep-phase dynamics diverged (largest voltage departure "
                              f"{worst:.3g}); use a smaller dt_fb, or raise alpha_fb.")
    scale = 1.0 / (p.sigma_hat ** 2 * steps * x.shape[0])
    return [a.mul(scale) for a in acc.split(net.layer_sizes[1:], dim=0)]


def draw_noise(shape: tuple, generator: torch.Generator, device=None, out=None) -> torch.Tensor:
    """The standard-normal draws ξ (steps, B, Σ n_i) of a sleep phase, float32, as
    :func:`feedback_update` takes them from its generator."""
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=device, out=out)


def _simulate(net: DFCNetwork, inputs: dict, noise: torch.Tensor, p: SleepParams):
    """The Euler-Maruyama loop over the standard-normal draws ``noise`` (steps, B, Σ n_i): the
    accumulated Σ_k v_A[k] u[k+1]ᵀ and the largest voltage departure at the end (tensors)."""
    L = net.num_layers
    n = [0]
    for size in net.layer_sizes[1:]:
        n.append(n[-1] + size)
    v0, r0, QT = inputs["v0"], inputs["r0"], inputs["QT"]
    WT = [None] + [inputs[f"WT{i}"] for i in range(1, L)]
    # The state is the departure d = v - v^- from the feed-forward equilibrium (eq. 2), and the
    # rates enter as Δr = φ(v^- + d) - φ(v^-) (network.phi_departure): the basal input departs
    # by W_i Δr_{i-1} (b_i and W_i r_{i-1}^- cancel exactly, and Δr_0 = 0 as the input is
    # constant), and the output error is e = r_L* - r_L = -Δr_L. Small departures keep their
    # digits in float32, where absolute voltages would round them away.
    d = torch.zeros_like(v0)
    dr = torch.zeros_like(v0)
    apical = torch.zeros_like(v0)
    u_int = torch.zeros(v0.shape[0], n[L] - n[L - 1], dtype=v0.dtype, device=v0.device)
    u = torch.zeros_like(u_int)
    acc = torch.zeros(n[L], u.shape[1], dtype=v0.dtype, device=v0.device)
    sigma = torch.cat([torch.full((n[i + 1] - n[i],), s, dtype=v0.dtype, device=v0.device)
                       for i, s in enumerate([p.sigma] * (L - 1) + [p.sigma_output])])
    noise = noise.to(v0.dtype).mul_(sigma * (math.sqrt(p.dt) / p.tau_a))
    a_v, a_a = p.dt / p.tau_v, p.dt / p.tau_a
    blocks = [slice(n[i], n[i + 1]) for i in range(L)]
    gain = [1.0 - r0[:, block] ** 2 if name == "tanh" else None     # tanh'(v^-)
            for name, block in zip(net.activations, blocks)]
    for k in range(noise.shape[0]):
        e = dr[:, blocks[-1]].neg()
        leak = u_int if p.leak == "integral" else u
        u_int = u_int + p.dt / p.tau_u * (e - p.alpha * leak)
        u_next = u_int + p.k_p * e
        acc.addmm_(apical.T, u_next)                                    # v_A[k] u[k+1]ᵀ
        # d[k+1] = (1 - a_v) d + a_v (v_A[k+1] + W Δr_{i-1}[k+1]), v_A of the previous control
        apical.mul_(1.0 - a_a).addmm_(u, QT, alpha=a_a).add_(noise[k])
        d.mul_(1.0 - a_v).add_(apical, alpha=a_v)
        for i, block in enumerate(blocks):
            if i > 0:
                d[:, block].addmm_(dr[:, blocks[i - 1]], WT[i])
            if net.activations[i] == "tanh":
                tanh_departure(small_tanh_(d[:, block].clone()), r0[:, block], gain[i],
                               out=dr[:, block])
            elif net.activations[i] == "linear":
                dr[:, block] = d[:, block]
            else:
                dr[:, block] = phi_departure(net.activations[i], v0[:, block], r0[:, block],
                                             d[:, block])
        u = u_next
    return acc, d.abs().max()


def _replay(net: DFCNetwork, inputs: dict, shape: tuple, p: SleepParams,
            generator: torch.Generator):
    """:func:`_simulate` as a CUDA graph, captured at the first call of each shape: the inputs
    are copied into the graph's own tensors and the noise is drawn into its buffer."""
    device = inputs["v0"].device
    key = (device, inputs["v0"].dtype, shape, tuple(net.layer_sizes), tuple(net.activations), p)
    with torch.cuda.device(device):
        if key not in _graphs:
            static = {name: t.clone() for name, t in inputs.items()}
            noise = torch.zeros(shape, dtype=torch.float32, device=device)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):      # warm-up, as torch.cuda.graph asks
                _simulate(net, static, noise, p)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = _simulate(net, static, noise, p)
            _graphs[key] = graph, static, noise, outputs
        graph, static, noise, outputs = _graphs[key]
        for name, t in inputs.items():
            static[name].copy_(t)
        draw_noise(shape, generator, device, out=noise)
        graph.replay()
    return outputs
