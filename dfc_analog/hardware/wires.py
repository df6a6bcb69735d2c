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
O(n_c n_k³ + n_c² n_k²) dense arithmetic per tile, in BLAS (per segment the inverse of
I + R_w A from its Cholesky factor and one product; Cholesky solves in its place were slower,
6.2 s against 4.5 s on a 512 × 256 tile, same run): a tile of 256 cell rows by 128 columns took 1.5 s on one core, against
16 s for a sparse LU of the same mesh (scipy's ``splu``, 65k nodes, 128 right-hand sides: the
2-D fill-in is its cost), in the same run; a full 512 × 256 tile is 8 × that (5.8 s on one
quiet core). Weighed and not taken: block Gauss–Seidel between the row ladders and the column
ladders (n_k right-hand sides, T by reciprocity) converged to 1e-12 in 7 sweeps on a 512 × 256
tile of pcm-like cells but took 42 s: its tridiagonal sweeps are memory-bound Python steps over
n_c n_k² numbers, where the elimination is BLAS; a nested dissection of the tile keeps all four
sides of each block as ports and counts ~2e10 operations against the elimination's ~5e10, for
much more code. The emulation uses T for the weights and S wherever V₋ enters (the
compartments' s and the noise gain become matrices, :mod:`dfc_analog.model.hardware`).

Read noise through the wires. A device's conductance fluctuation δG_j is, to first order, a
current source δG_j (V_j − u_j) across the cell, from its row node into its column node; the
network is linear, so what reaches the column's sense end is h_j times it. By reciprocity (the
current into port k from a source at node n equals node n's voltage with port k at 1 V and
every other source at 0), h of a cell is its column node's voltage minus its row node's with its
column's sense end at 1 V, the drivers and the other sense ends at 0 V. On a ladder the row
node is the driver (0 V): h = u = G_w K⁻¹ e_last (:func:`ladder_gain`), and T = h ∘ g: the
gain of a cell's noise is its transfer conductance over its conductance, h_c = T_c / g_c
(exactly; h = 1 without wire resistance). On a mesh the row node moves too: with U_c the
column-node voltages of cell row c for the n_k right-hand sides (U = I below the last row;
U_c = (I + R_w A_c)⁻¹ U_{c+1} through each segment, A_c the elimination's multi-port above it)
and the row nodes K_row⁻¹ G U_c, h_ck = (U_c − K_row⁻¹ G U_c)_kk (:func:`mesh_ports` with
``gains``: a second pass from the sense ends, the elimination's (I + R_w A_c)⁻¹ kept, n_c n_k²
numbers, about half the cost of the first). There T / g is no longer h: T_kc = Σ_k' g_ck' h_ck'^(k) sums what every
cell of row c delivers into column k, the cell's own share h_ck and the row wire's, what cells
of the other columns hand on through it (their h^(k), a few per cent of h on the tests' tiles).
The read-noise process keeps one source per column (:mod:`dfc_analog.model.hardware`,
:mod:`dfc_analog.circuit.crossbar`) with σ_j h_j per device: the share of a cell's noise that
the row wire carries to the other columns of its tile is left out (the coupling S_kk' / S_kk
is ≤ 3.9e-4 per pair on pcm-mesh's large net), and so is the cell's voltage: its
fluctuation's current is δG_j V_j, not δG_j (V_j − u_j), an error of the order of the IR drop
at the cell (the column nodes u are not states of either simulator). The σ_j h_j of each layer
are the ``read_sigma`` of :func:`wired_layers`'s layers, which both simulators read.

Solved once. :func:`wired_layers` (and :func:`driver_ports`, the energy's tile ports) keep
each layer's solution in a process-wide cache keyed by its conductance tensors (storage,
layout, in-place version counter) and the spec's wire fields: the emulation, the Jacobian,
the netlist, the energy and the deployment fold of one realisation (or of views of the same
tensors) solve each mesh once; new weights (a new tensor or one written in place) miss. The
energy's tile ports (with the drivers' admittance Y, O(n_c³ n_k) more per tile), solved first,
serve the others too (:func:`~dfc_analog.circuit.energy.solve_meshes`).

For small R_w, R_row and an n_c × n_k tile of equal cells g at one voltage the tile loses the
fraction g R_w (n_c + 1)(2 n_c + 1) / 6 + g R_row (n_k + 1)(2 n_k + 1) / 6 of its current to first
order (the textbook IR-drop estimate per wire, ≈ g R n² / 3: the average cell sees the wire's
voltage drop at a third of its length times the total current; to first order the two wires'
drops add).
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

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


def ladder_gain(g: torch.Tensor, R_w: float) -> torch.Tensor:
    """h (…, n): the share of a current injected at each cell's column node of ladders of cells
    ``g`` (…, n) that reaches the sense end, G_w K⁻¹ e_last (module docstring: T = h ∘ g); h = 1
    when R_w = 0."""
    if R_w == 0:
        return torch.ones_like(g)
    e_last = torch.zeros(g.shape[-1], dtype=g.dtype, device=g.device)
    e_last[-1] = 1.0 / R_w
    return ladder_solve(g, e_last, R_w)


def ladder_transfer(g: torch.Tensor, R_w: float) -> torch.Tensor:
    """T (…, n): the transfer conductances of ladders of cells ``g`` (…, n) into their sense end
    (module docstring); T = g when R_w = 0."""
    if R_w == 0:
        return g.clone()
    return ladder_gain(g, R_w) * g


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


def column_transfer(cells: torch.Tensor, R_w: float, tile: int) -> tuple:
    """(T, h) of every tile column of one crossbar, ``cells`` (n_i, n_cells) in wire order."""
    h = torch.cat([ladder_gain(cells[:, s], R_w) for s in tiles(cells.shape[1], tile)], dim=1)
    return h * cells, h


def column_tiles(n_columns: int, tile: int) -> list:
    """The column slices of a crossbar's tiles: at most ``tile`` columns each."""
    return [slice(a, min(a + tile, n_columns)) for a in range(0, n_columns, tile)]


def row_inverse(g: torch.Tensor, R_row: float) -> torch.Tensor:
    """K_row⁻¹ (n_c, n_k, n_k) of each row wire of cells ``g`` (n_c, n_k) (module docstring:
    its driver before column 0 at 0 V, the cells' column ends at 0 V), by the Thomas algorithm
    on the identity, one Python step per column, vectorised over the rows and right-hand
    sides."""
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
    return d_prime.permute(1, 0, 2)


def row_ladders(g: torch.Tensor, R_row: float) -> tuple:
    """Each row wire of cells ``g`` (n_c, n_k) (module docstring: its driver before column 0,
    the column nodes at 0 V) as a multi-port: (W (n_c, n_k, n_k), the admittance between its
    cells' column ends; f (n_c, n_k), the currents into them per volt on the driver; y (n_c,),
    the driver's own admittance), from :func:`row_inverse`."""
    G_row = 1.0 / R_row
    K_inv = row_inverse(g, R_row)
    W = torch.diag_embed(g) - g[:, :, None] * K_inv * g[:, None, :]
    return W, G_row * g * K_inv[:, :, 0], G_row - G_row * G_row * K_inv[:, 0, 0]


class MeshPorts(NamedTuple):
    """One tile's mesh seen from its ports (:func:`mesh_ports`)."""

    T: torch.Tensor                  # (n_k, n_c): sense currents per volt on the drivers
    S: torch.Tensor                  # (n_k, n_k): sense currents per volt on the sense ends
    Y: torch.Tensor | None = None    # (n_c, n_c): the drivers' admittance
    h: torch.Tensor | None = None    # (n_c, n_k): each cell's read-noise gain into its column


def mesh_ports(g: torch.Tensor, R_w: float, R_row: float, drivers: bool = False,
               gains: bool = False, chunk: int = 64) -> MeshPorts:
    """(T (n_k, n_c), S (n_k, n_k), Y, h) of one tile of cells ``g`` (n_c, n_k), rows in wire
    order (the first the farthest from the sense ends), columns from the drivers' end, with row
    wires R_row > 0 and column wires R_w ≥ 0 (module docstring): the sense currents
    I = T V + S V₋; with ``drivers`` Y (n_c, n_c) is the drivers' admittance with the sense
    ends at 0 V (the currents the drivers deliver are Y V − Tᵀ V₋), else None; with ``gains``
    h (n_c, n_k) the share of a current source across each cell (from its row node to its
    column node) that reaches its column's sense end (module docstring), else None. The row
    wires are solved ``chunk`` rows at a time."""
    n_c, n_k = g.shape
    eye = torch.eye(n_k, dtype=g.dtype, device=g.device)
    A = torch.zeros(n_k, n_k, dtype=g.dtype, device=g.device)
    J = torch.zeros(n_k, n_c, dtype=g.dtype, device=g.device)
    Y = torch.zeros(n_c, n_c, dtype=g.dtype, device=g.device) if drivers else None
    series = []                 # per cell row: (I + R_w A)⁻¹ of the segment below it

    def segment(c):
        """Through the column segments below the first c rows: the series law."""
        nonlocal A
        M = torch.cholesky_inverse(torch.linalg.cholesky(eye + R_w * A))     # SPD
        out = M @ torch.cat([A, J[:, :c]], dim=1)
        if drivers:
            Y[:c, :c] -= R_w * (J[:, :c].T @ out[:, n_k:])
        if gains:
            series.append(M)
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
    return MeshPorts(J, -A, Y, _mesh_gains(g, R_w, R_row, series, chunk) if gains else None)


def _mesh_gains(g: torch.Tensor, R_w: float, R_row: float, series: list,
                chunk: int) -> torch.Tensor:
    """h (n_c, n_k) of :func:`mesh_ports` by reciprocity (module docstring): with the sense ends
    at the unit voltages I (one right-hand side per column) and the drivers at 0 V, the column
    nodes of cell row c are U_c = (I + R_w A_c)⁻¹ U_{c+1} (U below the last row: I), ``series``
    the (I + R_w A_c)⁻¹ of the elimination; the row nodes K_row⁻¹ G U_c; h of cell (c, k) is the
    column node's voltage minus the row node's in column k's own solve."""
    n_c, n_k = g.shape
    h = torch.empty_like(g)
    U = torch.eye(n_k, dtype=g.dtype, device=g.device)
    for start in reversed(range(0, n_c, chunk)):
        K_inv = row_inverse(g[start:start + chunk], R_row)
        for r in reversed(range(K_inv.shape[0])):
            c = start + r
            if R_w > 0:
                U = series[c] @ U
            h[c] = U.diagonal() - ((K_inv[r] * g[c]) * U.T).sum(1)
    return h


@dataclass
class WiredLayer:
    """A layer's crossbars as their wires deliver them: ``layer``, the
    :class:`~dfc_analog.hardware.realise.LayerRealisation` whose conductances are the transfer
    conductances T and whose read-noise σ (with a process) are σ h, each device's as it reaches
    its column's sense end (module docstring); ``S_W``, ``S_Q`` (n_i, n_i), the forward and
    feedback crossbars' sense admittances S summed over their tiles, or None where S is
    diagonal, −Σ_c T (no row-wire resistance); ``tiles_W`` each W tile's (row tile a, column
    slice, its S) on a mesh. Its tensors are shared with the cache (:func:`wired_layers`):
    read them, never write them in place."""

    layer: LayerRealisation
    S_W: torch.Tensor | None = None
    S_Q: torch.Tensor | None = None
    tiles_W: list = dataclasses.field(default_factory=list)


def crossbar_tiles(cells: torch.Tensor, R_w: float, R_row: float, tile: int,
                   drivers: bool = False, gains: bool = False) -> list:
    """[(row tile a, cell slice, column slice, :class:`MeshPorts`)] of one crossbar of cells
    ``cells`` (n_i, n_cells), each neuron's cells in wire order, tiled ``tile`` rows (2 ``tile``
    cells) by ``tile`` columns, every tile a mesh (:func:`mesh_ports`)."""
    return [(a, rows, cols, mesh_ports(cells[cols, rows].T, R_w, R_row, drivers, gains))
            for a, rows in enumerate(tiles(cells.shape[1], tile))
            for cols in column_tiles(cells.shape[0], tile)]


def crossbar_mesh(cells: torch.Tensor, R_w: float, R_row: float, tile: int,
                  gains: bool = False, solved_tiles: list | None = None) -> tuple:
    """(T (n_i, n_cells), S (n_i, n_i), [(row tile a, column slice, S of the tile)], h) of one
    crossbar (:func:`crossbar_tiles`, or its tiles ``solved_tiles`` already solved); h
    (n_i, n_cells) each cell's read-noise gain with ``gains``, else None."""
    n_i = cells.shape[0]
    T = torch.zeros_like(cells)
    S = torch.zeros(n_i, n_i, dtype=cells.dtype, device=cells.device)
    h = torch.zeros_like(cells) if gains else None
    parts = []
    if solved_tiles is None:
        solved_tiles = crossbar_tiles(cells, R_w, R_row, tile, gains=gains)
    for a, rows, cols, ports in solved_tiles:
        T[cols, rows] = ports.T
        S[cols, cols] += ports.S
        if gains:
            h[cols, rows] = ports.h.T
        parts.append((a, cols, ports.S))
    return T, S, parts, h


# The wire solutions of the layers in this process, most recently used last: a layer's key is
# the identity and version of its conductance tensors (their storage, layout and in-place
# version counter; the entry holds the tensors, so their storage is never reused while it is
# kept) and the spec's wire fields, so a changed conductance, a new realisation or other wires
# miss. Writes that bypass the version counter (through .numpy() or .data) are not seen.
CONDUCTANCES = ("G_pos", "G_neg", "Gb_pos", "Gb_neg", "GQ_pos", "GQ_neg")
CACHE_SIZE = 64
_solved: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _layer_key(lr, spec, what) -> tuple | None:
    """The cache key of ``what`` for layer ``lr`` on ``spec``'s wires (None: not cacheable)."""
    s = spec.synapse
    try:
        state = tuple((t.data_ptr(), t.shape, t.stride(), t.dtype, t.device, t._version)
                      for t in (getattr(lr, name) for name in CONDUCTANCES))
    except RuntimeError:        # inference-mode tensors keep no version counter
        return None
    return what, s.wire_resistance, s.row_wire_resistance, spec.crossbar_size, state


def cached(lr, spec, what: tuple):
    """The cache's entry ``what`` for layer ``lr`` on ``spec``'s wires, or None."""
    key = _layer_key(lr, spec, what)
    with _lock:
        if key is None or key not in _solved:
            return None
        _solved.move_to_end(key)
        return _solved[key][1]


def solved(lr, spec, what: tuple, compute, accept: tuple = ()):
    """``compute()`` for layer ``lr`` on ``spec``'s wires, once per process (the cache above):
    an entry under ``what`` or under any key in ``accept`` (a superset of it) is returned
    instead."""
    for w in (what,) + tuple(accept):
        value = cached(lr, spec, w)
        if value is not None:
            return value
    value = compute()
    key = _layer_key(lr, spec, what)
    if key is not None:
        with _lock:
            _solved[key] = (tuple(getattr(lr, name) for name in CONDUCTANCES), value)
            while len(_solved) > CACHE_SIZE:
                _solved.popitem(last=False)
    return value


def crossbar_solution(lr, spec, gains: bool = False) -> tuple:
    """(T_W, T_Q, S_W, S_Q, W tiles, h_W, h_Q) of layer ``lr``'s crossbars on ``spec``'s wires
    (cached: :func:`solved`): T and h (n_i, cells) in wire order (:func:`column_cells`), S per
    crossbar (None without row-wire resistance), W tiles as :func:`crossbar_mesh`'s; h (each
    cell's read-noise gain) None on a mesh unless ``gains`` (it costs a second pass there; on
    column ladders it is the solve itself)."""
    R_w, R_row, tile = (spec.synapse.wire_resistance, spec.synapse.row_wire_resistance,
                        spec.crossbar_size)
    if R_row == 0:
        def ladders():
            (T_W, h_W), (T_Q, h_Q) = (column_transfer(C, R_w, tile) for C in column_cells(lr))
            return T_W, T_Q, None, None, [], h_W, h_Q
        return solved(lr, spec, ("ladders",), ladders)

    def mesh():
        known = (None, None) if gains else (cached(lr, spec, ("drivers",)) or (None, None))
        (T_W, S_W, parts, h_W), (T_Q, S_Q, _, h_Q) = (
            crossbar_mesh(C, R_w, R_row, tile, gains, ports)
            for C, ports in zip(column_cells(lr), known))
        return T_W, T_Q, S_W, S_Q, parts, h_W, h_Q
    return solved(lr, spec, ("mesh", gains), mesh, accept=() if gains else (("mesh", True),))


def driver_ports(lr, spec) -> tuple:
    """(W tiles, Q tiles) of layer ``lr``'s crossbars on a mesh, each :func:`crossbar_tiles`
    with the drivers' admittance Y (what the energy needs; cached: :func:`solved`). Solved
    first, they serve :func:`crossbar_solution` without read-noise gains as well."""
    R_w, R_row, tile = (spec.synapse.wire_resistance, spec.synapse.row_wire_resistance,
                        spec.crossbar_size)
    return solved(lr, spec, ("drivers",), lambda: tuple(
        crossbar_tiles(C, R_w, R_row, tile, drivers=True) for C in column_cells(lr)))


def wired_layers(real, count: int | None = None) -> list:
    """Per layer (the first ``count``; default all), the :class:`WiredLayer` of its crossbars
    with the spec's wire resistances: what they deliver into the virtual grounds (module
    docstring). Without wire resistance, the realisation's own layers. Each layer's wires are
    solved once per process (:func:`crossbar_solution`)."""
    R_w, R_row = real.spec.synapse.wire_resistance, real.spec.synapse.row_wire_resistance
    layers = real.layers[:count]
    if R_w == 0 and R_row == 0:
        return [WiredLayer(lr) for lr in layers]
    out = []
    for lr in layers:
        noise = lr.read_sigma is not None
        T_W, T_Q, S_W, S_Q, parts, h_W, h_Q = crossbar_solution(lr, real.spec, gains=noise)
        n_in, n_L = lr.G_pos.shape[1], lr.GQ_pos.shape[1]
        T_W, T_Q = T_W.reshape(-1, n_in + 1, 2), T_Q.reshape(-1, n_L, 2)
        read = None
        if noise:                   # σ h per device, in read_sigma's layout
            sp, sn, sbp, sbn, sqp, sqn = lr.read_sigma
            h_W, h_Q = h_W.reshape(-1, n_in + 1, 2), h_Q.reshape(-1, n_L, 2)
            read = (sp * h_W[:, :n_in, 0], sn * h_W[:, :n_in, 1], sbp * h_W[:, n_in, 0],
                    sbn * h_W[:, n_in, 1], sqp * h_Q[..., 0], sqn * h_Q[..., 1])
        out.append(WiredLayer(dataclasses.replace(
            lr, G_pos=T_W[:, :n_in, 0], G_neg=T_W[:, :n_in, 1], Gb_pos=T_W[:, n_in, 0],
            Gb_neg=T_W[:, n_in, 1], GQ_pos=T_Q[..., 0], GQ_neg=T_Q[..., 1], read_sigma=read),
            S_W, S_Q, parts))
    return out


def ir_drop_estimate(g: float, R_w: float, n: int) -> float:
    """The textbook first-order IR drop (module docstring): the fraction of its current a
    wire of ``n`` equal cells ``g`` at one voltage loses (a column to its sense end, a row from
    its driver); the drops of a mesh's two wires add."""
    return g * R_w * (n + 1) * (2 * n + 1) / 6.0

