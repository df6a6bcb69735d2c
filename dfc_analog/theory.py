"""Diagnostics of the paper's theory (§3-5), batched over samples.

condition2_ratio   Condition 2: ‖P Q‖_F / ‖Q‖_F with P = Jᵀ(J Jᵀ)⁻¹J the projector on the row space
                   of J, per sample; 1 means the column space of Q lies in the row space of J.
"""
from __future__ import annotations

import torch

from .network import DFCNetwork


@torch.no_grad()
def condition2_ratio(net: DFCNetwork, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Condition-2 ratio at the feed-forward state of inputs ``x``: shape (B,)."""
    v_ff, _ = net.feedforward(x)
    J = net.jacobian(v_ff)                                         # (B, n_L, N)
    Q = net.feedback_matrix()                                      # (N, n_L)
    JQ = J @ Q                                                     # (B, n_L, n_L)
    PQ = J.transpose(1, 2) @ torch.linalg.solve(J @ J.transpose(1, 2), JQ)
    return torch.linalg.matrix_norm(PQ) / torch.linalg.matrix_norm(Q)
