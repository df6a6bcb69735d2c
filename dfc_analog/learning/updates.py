"""The eq. (5) update read off a :class:`~dfc_analog.model.Trajectory` (from any simulator of a
phase), and the angle between two updates."""
from __future__ import annotations

import math

import torch

from dfc_analog.model.network import DFCNetwork
from dfc_analog.model.trajectory import Trajectory


def trapezoid_weights(t: torch.Tensor) -> torch.Tensor:
    """w with Σ_k w_k f(t_k) the trapezoidal rule for ∫ f dt on the grid ``t``."""
    dt = torch.diff(t)
    w = torch.zeros_like(t)
    w[:-1] += 0.5 * dt
    w[1:] += 0.5 * dt
    return w


def trajectory_update(net: DFCNetwork, traj: Trajectory, x: torch.Tensor, plasticity: str):
    """The DFC update of eq. (5) read off a trajectory, in the scale of
    :func:`dfc_analog.learning.forward_update`: g_W_i = -(2/B)(1/T) ∫ Δ_i r_{i-1}ᵀ dt and
    g_b_i = -(2/B)(1/T) ∫ Σ_b Δ_i dt, with Δ_i = φ(v_i) - φ(v_B,i) (``plasticity='rate'``) or
    v_i - v_B,i (``'voltage'``, eq. 9). Returns the list gW_1..gW_L, gb_1..gb_L."""
    t = traj.t.double()
    w = trapezoid_weights(t)
    T_len = float(t[-1] - t[0])
    B = x.shape[0]
    scale = -2.0 / (B * T_len)
    gW, gb = [], []
    for i in range(net.num_layers):
        v, basal = traj.soma[i].double(), traj.basal[i].double()
        if plasticity == "voltage":
            delta = v - basal
        else:
            delta = traj.rate[i].double() - net.phi(i, basal)
        if i == 0:
            pre = x.double().expand(t.shape[0], *x.shape)
        else:
            pre = traj.rate[i - 1].double()
        gW.append(scale * torch.einsum("t,tbi,tbj->ij", w, delta, pre))
        gb.append(scale * torch.einsum("t,tbi->i", w, delta))
    return gW + gb


def _flat(update) -> torch.Tensor:
    if isinstance(update, torch.Tensor):
        return update.reshape(-1).double()
    return torch.cat([g.reshape(-1).double().cpu() for g in update])


def update_angle(a, b):
    """(angle in degrees, ‖a - b‖ / ‖a‖) between two updates, each a list of tensors
    (concatenated) or one tensor. Two zero updates: (0, 0); one zero: (90, inf)."""
    va, vb = _flat(a), _flat(b)
    na, nb = float(va.norm()), float(vb.norm())
    if na == 0 or nb == 0:
        return (0.0 if na == nb else 90.0), (0.0 if na == nb else math.inf)
    cos = float(va @ vb) / (na * nb)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos)))), float((va - vb).norm()) / na


def angle_deg(a, b) -> float:
    """The angle in degrees between two updates (:func:`update_angle`)."""
    return update_angle(a, b)[0]
