"""Wire resistance of the crossbar columns (IR drop): each tile column is a resistive ladder.

Layout (the same in :mod:`dfc_analog.circuit.crossbar`): a tile column of layer i holds its
cells in row order, two per weight row j (G⁺ on −r_j, then G⁻ on r_j; the bias pair last, G_b⁺
on −V_ref, G_b⁻ on +V_ref; Q tiles likewise with ∓u_m). Cell c connects its row, an ideal
driver at V_c, to node u_c of the column wire; one wire segment R_w (``[synapse]
wire_resistance``) joins consecutive cells, and one more joins the last cell (nearest the soma)
to the column's sense end at the soma's virtual ground V₋ (the first cell is the farthest). The
row wires are taken as ideal (a row's driver reaches every column at V_c).

The ladder is linear, so the current it delivers into the virtual ground is

    I = Σ_c T_c V_c + S V₋,    T = G_w (K⁻¹ e_last) ∘ g,    S = −Σ_c T_c,

with g the cell conductances, G_w = 1/R_w and K the tridiagonal nodal matrix of the wire
(K_cc = g_c + G_w · segments at c, K_c,c±1 = −G_w); S = −Σ T because equal voltages everywhere
carry no current. T replaces G in every equation of the ideal-wire crossbar: the emulation
(:mod:`dfc_analog.model.hardware`) uses the :class:`~dfc_analog.hardware.realise.LayerRealisation`
of :func:`transfer_layers`, whose conductances are T (R_f T for the weights, R_f Σ T for the
compartments' s and the noise gain 1 + R_f Σ T). With R_w = 0, T = g exactly.

For small R_w and n equal cells at one voltage the column loses the fraction
g R_w (n + 1)(2n + 1) / 6 ≈ g R_w n² / 3 of its current (the textbook IR-drop estimate: the
average cell sees the wire's voltage drop at a third of its length times the total current).
"""
from __future__ import annotations

import dataclasses

import torch


def ladder_solve(g: torch.Tensor, rhs: torch.Tensor, R_w: float) -> torch.Tensor:
    """K⁻¹ rhs for the ladders of cell conductances ``g`` (…, n) (module docstring; K is
    diagonally dominant, so the Thomas algorithm needs no pivoting); ``rhs`` broadcasts
    against ``g``, one Python step per cell, vectorised over every other dimension."""
    G_w = 1.0 / R_w
    n = g.shape[-1]
    segments = torch.full((n,), 2.0, dtype=g.dtype, device=g.device)
    segments[0] = 1.0        # the farthest cell (alone: its segment to the sense end)
    diag = g + G_w * segments
    shape = torch.broadcast_shapes(diag.shape, rhs.shape)
    diag, rhs = diag.expand(shape), rhs.expand(shape)
    c_prime = torch.empty(shape, dtype=g.dtype, device=g.device)
    d_prime = torch.empty(shape, dtype=g.dtype, device=g.device)
    c_prime[..., 0] = -G_w / diag[..., 0]
    d_prime[..., 0] = rhs[..., 0] / diag[..., 0]
    for c in range(1, n):
        denom = diag[..., c] + G_w * c_prime[..., c - 1]
        c_prime[..., c] = -G_w / denom
        d_prime[..., c] = (rhs[..., c] + G_w * d_prime[..., c - 1]) / denom
    out = torch.empty(shape, dtype=g.dtype, device=g.device)
    out[..., n - 1] = d_prime[..., n - 1]
    for c in range(n - 2, -1, -1):
        out[..., c] = d_prime[..., c] - c_prime[..., c] * out[..., c + 1]
    return out


def ladder_transfer(g: torch.Tensor, R_w: float) -> torch.Tensor:
    """T (…, n): the transfer conductances of ladders of cells ``g`` (…, n) into their sense end
    (module docstring); T = g when R_w = 0."""
    if R_w == 0:
        return g.clone()
    e_last = torch.zeros(g.shape[-1], dtype=g.dtype, device=g.device)
    e_last[-1] = 1.0 / R_w
    return ladder_solve(g, e_last, R_w) * g


def ladder_nodes(g: torch.Tensor, v_cells: torch.Tensor, v_end: torch.Tensor,
                 R_w: float) -> torch.Tensor:
    """The wire's node voltages u (…, n) with the rows at ``v_cells`` (…, n) and the sense end
    at ``v_end`` (…): K u = g ∘ V + G_w e_last V₋."""
    rhs = g * v_cells
    rhs = rhs.expand(torch.broadcast_shapes(rhs.shape, v_end[..., None].shape)).clone()
    rhs[..., -1] += v_end / R_w
    return ladder_solve(g, rhs, R_w)


def column_cells(lr) -> tuple:
    """(W cells (n_i, 2 (n_{i−1} + 1)), Q cells (n_i, 2 n_L)) of a layer's columns in wire order
    (module docstring)."""
    W = torch.stack([torch.cat([lr.G_pos, lr.Gb_pos[:, None]], 1),
                     torch.cat([lr.G_neg, lr.Gb_neg[:, None]], 1)], dim=-1)
    Q = torch.stack([lr.GQ_pos, lr.GQ_neg], dim=-1)
    return W.reshape(W.shape[0], -1), Q.reshape(Q.shape[0], -1)


def tiles(n_cells: int, tile: int) -> list:
    """The cell slices of a column's tiles: ``tile`` rows, two cells per row."""
    return [slice(a, min(a + 2 * tile, n_cells)) for a in range(0, n_cells, 2 * tile)]


def column_transfer(cells: torch.Tensor, R_w: float, tile: int) -> torch.Tensor:
    """T of every tile column of one crossbar, ``cells`` (n_i, n_cells) in wire order."""
    return torch.cat([ladder_transfer(cells[:, s], R_w) for s in tiles(cells.shape[1], tile)],
                     dim=1)


def transfer_layers(real) -> list:
    """Per layer, the :class:`~dfc_analog.hardware.realise.LayerRealisation` whose conductances
    are the wire ladders' transfer conductances T (module docstring): what the crossbars deliver
    into the virtual grounds. Without wire resistance, the realisation's own layers."""
    R_w = real.spec.synapse.wire_resistance
    if R_w == 0:
        return real.layers
    out = []
    for lr in real.layers:
        W, Q = column_cells(lr)
        n_in, n_L = lr.G_pos.shape[1], lr.GQ_pos.shape[1]
        T_W = column_transfer(W, R_w, real.spec.crossbar_size).reshape(-1, n_in + 1, 2)
        T_Q = column_transfer(Q, R_w, real.spec.crossbar_size).reshape(-1, n_L, 2)
        out.append(dataclasses.replace(
            lr, G_pos=T_W[:, :n_in, 0], G_neg=T_W[:, :n_in, 1], Gb_pos=T_W[:, n_in, 0],
            Gb_neg=T_W[:, n_in, 1], GQ_pos=T_Q[..., 0], GQ_neg=T_Q[..., 1]))
    return out


def ir_drop_estimate(g: float, R_w: float, n: int) -> float:
    """The textbook first-order IR drop (module docstring): the fraction of its current a
    column of ``n`` equal cells ``g`` at one voltage loses to its wire."""
    return g * R_w * (n + 1) * (2 * n + 1) / 6.0

