"""The task loss and the output target of eq. (3), r_L* = r_L^- - λ ∂L/∂r_L, in closed form."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(r_L: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Minibatch-mean task loss (MSE per element, or cross-entropy of the logits r_L)."""
    if loss == "mse":
        return F.mse_loss(r_L, y)
    return F.cross_entropy(r_L, y)


def loss_gradient(r_L: torch.Tensor, y: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """∂L/∂r_L in closed form.

    ``reduction='mean'``: gradient of the minibatch-mean loss (the authors' convention);
    ``'sample'``: gradient of each sample's own loss, L = ‖r_L - y‖² or -log softmax(r_L)_y.
    """
    B = r_L.shape[0]
    if loss == "mse":
        grad = 2.0 * (r_L - y)
        return grad / (B * r_L.shape[1]) if reduction == "mean" else grad
    grad = torch.softmax(r_L, dim=1) - F.one_hot(y, r_L.shape[1]).to(r_L.dtype)
    return grad / B if reduction == "mean" else grad


def target_gain(loss: str, reduction: str, target_stepsize: float, batch: int,
                n_outputs: int) -> float:
    """The factor g of eq. (3) written per sample, r_L* = r_L^- - g ∇ with ∇ = 2 (r_L^- - y)
    (``'mse'``) or softmax(r_L^-) - onehot(y) (``'cross_entropy'``): λ for ``reduction='sample'``,
    λ / (B n_L) (mse) or λ / B (cross-entropy) for the minibatch mean, as
    :func:`loss_gradient` takes it. The circuit's target (:mod:`dfc_analog.circuit.graph`)
    is formed with it."""
    if reduction == "sample":
        return float(target_stepsize)
    return float(target_stepsize) / (batch * (n_outputs if loss == "mse" else 1))


def output_target(r_L: torch.Tensor, y: torch.Tensor, loss: str, reduction: str,
                  target_stepsize: float):
    """Eq. (3): r_L* = r_L^- - λ ∂L/∂r_L; returns (r_L*, δ_L)."""
    delta = -target_stepsize * loss_gradient(r_L, y, loss, reduction)
    return r_L + delta, delta
