"""Wire resistance of the crossbars (IR drop): each tile column is a resistive ladder, and with
row-wire resistance too each tile is a 2-D resistive mesh.

Layout (the same in :mod:`dfc_analog.circuit.crossbar`): a tile column of layer i holds its
cells in row order, two per weight row j (G⁺ on −r_j, then G⁻ on r_j; the bias pair last, G_b⁺
on −V_ref, G_b⁻ on +V_ref; Q tiles likewise with ∓u_m). Cell c connects its row, driven at V_c,
to node u_c of the column wire; one wire segment R_w (``[synapse] wire_resistance``) joins
consecutive cells, and one more joins the last cell (nearest the soma) to the column's sense end
at the soma's virtual ground V₋ (the first cell is the farthest). A tile holds at most
``crossbar_size`` weight rows and ``crossbar_size`` columns (neurons).

Column wires only (``row_wire_resistance`` 0: each row's driver reaches every column at V_c).
The ladder is linear, so the current it delivers into the virtual ground is

    I = Σ_c T_c V_c + S V₋,    T = G_w (K⁻¹ e_last) ∘ g,    S = −Σ_c T_c,

with g the cell conductances, G_w = 1/R_w and K the tridiagonal nodal matrix of the wire
(K_cc = g_c + G_w · segments at c, K_c,c±1 = −G_w); S = −Σ T because equal voltages everywhere
carry no current. T replaces G in every equation of the ideal-wire crossbar: the emulation
(:mod:`dfc_analog.model.hardware`) uses the :class:`~dfc_analog.hardware.realise.LayerRealisation`
of :func:`wired_layers`, whose conductances are T (R_f T for the weights, R_f Σ T for the
compartments' s and the noise gain 1 + R_f Σ T). With R_w = 0, T = g exactly.

The mesh (``row_wire_resistance`` R_row > 0). Each row wire of a tile is a ladder too: its driver
at one end (before the tile's first column), one segment R_row to the first cell, one between the
cells of consecutive columns; cell (c, k) joins row node a_ck to column node u_ck. With the
drivers at V (n_c) and the sense ends at V₋ (n_k) the tile's sense currents are

    I = T V + S V₋,   T (n_k × n_c),   S (n_k × n_k) symmetric, S 1 = −T 1,

S now couples the columns of a tile (current from one column's virtual ground reaches the
others through the row wires). :func:`mesh_ports` computes T, S (and the drivers' own
admittance) by eliminating the mesh exactly, cell row by cell row from the farthest: each row
wire with its cells, column nodes at 0 V, is a multi-port of admittance W_c = G − G K_row⁻¹ G
and short-circuit currents f_c V_c (K_row its tridiagonal ladder matrix, G = diag g_c: one
tridiagonal solve per row, vectorised over the rows); the part of the tile above a column
segment is a multi-port A (n_k × n_k) with Norton currents J V; through the segment it becomes
(I + R_w A)⁻¹ A and (I + R_w A)⁻¹ J (the series law of a multi-port); adding the next row adds
W_c and the column f_c. After the last segment to the sense ends, T = J and S = −A. The cost is
O(n_c n_k³ + n_c² n_k²) dense arithmetic per tile, in BLAS: a tile of 256 cell rows by 128
columns took 1.5 s on one core, against 16 s for a sparse LU of the same mesh (scipy's ``splu``,
65k nodes, 128 right-hand sides: the 2-D fill-in is its cost), in the same run; a full
512 × 256 tile is 8 × that. The emulation uses T for the weights and S wherever V₋ enters (the
compartments' s and the noise gain become matrices, :mod:`dfc_analog.model.hardware`).

For small R_w, R_row and an n_c × n_k tile of equal cells g at one voltage the tile loses the
fraction g R_w (n_c + 1)(2 n_c + 1) / 6 + g R_row (n_k + 1)(2 n_k + 1) / 6 of its current to first
order (the textbook IR-drop estimate per wire, ≈ g R n² / 3: the average cell sees the wire's
voltage drop at a third of its length times the total current; to first order the two wires'
drops add).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from dfc_analog.hardware.realise import LayerRealisation


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


def column_tiles(n_columns: int, tile: int) -> list:
    """The column slices of a crossbar's tiles: at most ``tile`` columns each."""
    return [slice(a, min(a + tile, n_columns)) for a in range(0, n_columns, tile)]


def row_ladders(g: torch.Tensor, R_row: float) -> tuple:
    """Each row wire of cells ``g`` (n_c, n_k) (module docstring: its driver before column 0,
    the column nodes at 0 V) as a multi-port: (W (n_c, n_k, n_k), the admittance between its
    cells' column ends; f (n_c, n_k), the currents into them per volt on the driver; y (n_c,),
    the driver's own admittance). K_row⁻¹ by the Thomas algorithm on the identity, one Python
    step per column, vectorised over the rows and right-hand sides."""
    G_row = 1.0 / R_row
    n_c, n = g.shape
    segments = torch.full((n,), 2.0, dtype=g.dtype, device=g.device)
    segments[-1] = 1.0          # the far end (alone: its segment towards the driver)
    diag = (g + G_row * segments).T                                  # (n, n_c)
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    c_prime = torch.empty(n, n_c, dtype=g.dtype, device=g.device)
    d_prime = torch.empty(n, n_c, n, dtype=g.dtype, device=g.device)
    c_prime[0] = -G_row / diag[0]
    d_prime[0] = eye[0] / diag[0][:, None]
    for k in range(1, n):
        denom = diag[k] + G_row * c_prime[k - 1]
        c_prime[k] = -G_row / denom
        d_prime[k] = (eye[k] + G_row * d_prime[k - 1]) / denom[:, None]
    for k in range(n - 2, -1, -1):                    # back substitution, in place
        d_prime[k] -= c_prime[k][:, None] * d_prime[k + 1]
    K_inv = d_prime.permute(1, 0, 2)                               # (n_c, n, n)
    W = torch.diag_embed(g) - g[:, :, None] * K_inv * g[:, None, :]
    return W, G_row * g * K_inv[:, :, 0], G_row - G_row * G_row * K_inv[:, 0, 0]


def mesh_ports(g: torch.Tensor, R_w: float, R_row: float, drivers: bool = False,
               chunk: int = 64) -> tuple:
    """(T (n_k, n_c), S (n_k, n_k), Y) of one tile of cells ``g`` (n_c, n_k), rows in wire
    order (the first the farthest from the sense ends), columns from the drivers' end, with row
    wires R_row > 0 and column wires R_w ≥ 0 (module docstring): the sense currents
    I = T V + S V₋; with ``drivers`` Y (n_c, n_c) is the drivers' admittance with the sense
    ends at 0 V (the currents the drivers deliver are Y V − Tᵀ V₋), else None. The row wires
    are solved ``chunk`` rows at a time."""
    n_c, n_k = g.shape
    eye = torch.eye(n_k, dtype=g.dtype, device=g.device)
    A = torch.zeros(n_k, n_k, dtype=g.dtype, device=g.device)
    J = torch.zeros(n_k, n_c, dtype=g.dtype, device=g.device)
    Y = torch.zeros(n_c, n_c, dtype=g.dtype, device=g.device) if drivers else None

    def segment(c):
        """Through the column segments below the first c rows: the series law."""
        nonlocal A
        M = torch.cholesky_inverse(torch.linalg.cholesky(eye + R_w * A))     # SPD
        out = M @ torch.cat([A, J[:, :c]], dim=1)
        if drivers:
            Y[:c, :c] -= R_w * (J[:, :c].T @ out[:, n_k:])
        J[:, :c] = out[:, n_k:]
        A = 0.5 * (out[:, :n_k] + out[:, :n_k].T)

    for start in range(0, n_c, chunk):
        W, f, y = row_ladders(g[start:start + chunk], R_row)
        for r in range(W.shape[0]):
            c = start + r
            if c > 0 and R_w > 0:
                segment(c)
            A = A + W[r]
            J[:, c] = f[r]
            if drivers:
                Y[c, c] = y[r]
    if R_w > 0:
        segment(n_c)
    return J, -A, Y


@dataclass
class WiredLayer:
    """A layer's crossbars as their wires deliver them: ``layer``, the
    :class:`~dfc_analog.hardware.realise.LayerRealisation` whose conductances are the transfer
    conductances T (module docstring); ``S_W``, ``S_Q`` (n_i, n_i), the forward and feedback
    crossbars' sense admittances S summed over their tiles, or None where S is diagonal,
    −Σ_c T (no row-wire resistance); ``tiles_W`` each W tile's (row tile a, column slice,
    its S) on a mesh."""

    layer: LayerRealisation
    S_W: torch.Tensor | None = None
    S_Q: torch.Tensor | None = None
    tiles_W: list = dataclasses.field(default_factory=list)


def crossbar_mesh(cells: torch.Tensor, R_w: float, R_row: float, tile: int) -> tuple:
    """(T (n_i, n_cells), S (n_i, n_i), [(row tile a, column slice, S of the tile)]) of one
    crossbar of cells ``cells`` (n_i, n_cells), each neuron's cells in wire order, tiled
    ``tile`` rows (2 ``tile`` cells) by ``tile`` columns, every tile a mesh
    (:func:`mesh_ports`)."""
    n_i = cells.shape[0]
    T = torch.zeros_like(cells)
    S = torch.zeros(n_i, n_i, dtype=cells.dtype, device=cells.device)
    parts = []
    for a, rows in enumerate(tiles(cells.shape[1], tile)):
        for cols in column_tiles(n_i, tile):
            T_tile, S_tile, _ = mesh_ports(cells[cols, rows].T, R_w, R_row)
            T[cols, rows] = T_tile
            S[cols, cols] += S_tile
            parts.append((a, cols, S_tile))
    return T, S, parts


def wired_layers(real, count: int | None = None) -> list:
    """Per layer (the first ``count``; default all), the :class:`WiredLayer` of its crossbars
    with the spec's wire resistances: what they deliver into the virtual grounds (module
    docstring). Without wire resistance, the realisation's own layers."""
    R_w, R_row = real.spec.synapse.wire_resistance, real.spec.synapse.row_wire_resistance
    layers = real.layers[:count]
    if R_w == 0 and R_row == 0:
        return [WiredLayer(lr) for lr in layers]
    tile = real.spec.crossbar_size
    out = []
    for lr in layers:
        W, Q = column_cells(lr)
        n_in, n_L = lr.G_pos.shape[1], lr.GQ_pos.shape[1]
        if R_row == 0:
            T_W, T_Q = column_transfer(W, R_w, tile), column_transfer(Q, R_w, tile)
            S_W = S_Q = None
            parts = []
        else:
            (T_W, S_W, parts), (T_Q, S_Q, _) = (crossbar_mesh(C, R_w, R_row, tile)
                                                for C in (W, Q))
        T_W, T_Q = T_W.reshape(-1, n_in + 1, 2), T_Q.reshape(-1, n_L, 2)
        out.append(WiredLayer(dataclasses.replace(
            lr, G_pos=T_W[:, :n_in, 0], G_neg=T_W[:, :n_in, 1], Gb_pos=T_W[:, n_in, 0],
            Gb_neg=T_W[:, n_in, 1], GQ_pos=T_Q[..., 0], GQ_neg=T_Q[..., 1]), S_W, S_Q, parts))
    return out


def ir_drop_estimate(g: float, R_w: float, n: int) -> float:
    """The textbook first-order IR drop (module docstring): the fraction of its current a
    wire of ``n`` equal cells ``g`` at one voltage loses (a column to its sense end, a row from
    its driver); the drops of a mesh's two wires add."""
    return g * R_w * (n + 1) * (2 * n + 1) / 6.0

