"""The element part P_T(a) = int_T a grad Lambda_j . grad Lambda_i of the local operators, and
its online evaluation at a cost independent of the fine mesh.

P_T is linear in a: P_T(a) = sum_c a_c W_c over T's fine cells c (:func:`element_weights`).
:class:`ElementPart` computes it exactly from a(x, p) on T's fine cells (prod r_k evaluations
per coarse cell, growing with 1/h), or, after :meth:`ElementPart.interpolate`, from an
empirical interpolation of a on each coarse cell (DEIM, Chaturantabut–Sorensen 2010): the POD
U_T of the training fields a(., p_k)|_T (modes above ``tol`` of the largest singular value),
m_T magic points I_T chosen greedily, and

    a(., p)|_T ~ U_T U_T[I_T]^-1 a(x_{I_T}, p),   P_T(a(p)) ~ D_T a(x_{I_T}, p),

D_T = (sum_c U_T[c] W_c) U_T[I_T]^-1 precomputed: m_T evaluations of a per coarse cell and one
small product, exact when a(., p)|_T lies in the span of the training fields (a family affine
in p, piecewise constant in fixed regions, or given samples). A few more points per cell
(:data:`CHECKS`), not interpolated, check each step that the interpolation still holds there;
where it misses by more than ``check_tol`` times the largest |a| at T's points (a field the
training samples do not span) that cell falls back to the exact element part, and
:attr:`ElementPart.fallbacks` counts those cells. The checks sample a few cells only: a change
confined to other fine cells passes them, which is why the fit also measures the
interpolation on held-out fields
(:func:`~dolfinx_lod.neural.operators.check_interpolation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids, box_keys, box_points, corner_bits, lattice_keys
from dolfinx_lod.inputs import fine_cell_midpoints
from dolfinx_lod.neural.presets import OPERATOR_INTERPOLATION as INTERPOLATION
from dolfinx_lod.patches import Patch

#: Check points per coarse cell (:meth:`ElementPart.values`).
CHECKS = 4


def element_weights(H: npt.ArrayLike, r: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """W_c[a, b] = int_c grad Lambda_a . grad Lambda_b for every fine cell c of a coarse cell T
    (box order, x fastest) and T's corners a, b (:func:`corner_bits` order): the Q1 hats are
    products of 1D hats, integrated exactly by 2-point Gauss per fine interval. Shape
    (prod r_k, 2^d, 2^d); H: coarse cell sizes H_k, r: fine cells per coarse cell r_k."""
    H, r = np.asarray(H, dtype=np.float64), np.asarray(r, dtype=np.int64)
    d = H.size
    bits = corner_bits(d)
    cells = box_points(r)
    W = np.zeros((cells.shape[0], 2**d, 2**d))
    grad = np.array([-1.0, 1.0])
    for k in range(d):  # d/dx_k acts on direction k, the other directions integrate hats
        term = np.ones_like(W)
        for m in range(d):
            s = cells[:, m][:, None]  # (cells, 1)
            nodes = (s + 0.5 + np.array([-0.5, 0.5]) / np.sqrt(3.0)) / r[m]  # (cells, 2)
            phi = np.stack([1.0 - nodes, nodes], axis=-1)  # (cells, 2 points, 2 hats)
            a, b = bits[:, m][:, None], bits[:, m][None, :]
            if m == k:
                factor = np.broadcast_to(grad[a] * grad[b] / (r[m] * H[m]), W.shape)
            else:
                factor = 0.5 / r[m] * H[m] * (phi[:, :, a] * phi[:, :, b]).sum(axis=1)
            term = term * factor
        W += term
    return W


def kept_entries(grids: NestedGrids, patches: Sequence[Patch], size: int) -> npt.NDArray[np.bool_]:
    """The entries of the padded operators [K_T; M_T] (G, 2 N_max 2^d) that the coarse system
    uses: row i (patch vertex) and column j (corner of T) both off the Dirichlet sides (the
    coarse system zeroes the rows and columns of the Dirichlet vertices) and not padding."""
    corners = 2**grids.dim
    dirichlet = grids.coarse_dirichlet_mask()
    out = np.zeros((len(patches), 2, size, corners), dtype=bool)
    for g, patch in enumerate(patches):
        rows = ~dirichlet[patch.coarse_vertex_keys(grids.coarse_sizes)]
        cols = ~dirichlet[patch.element_vertex_keys(grids.coarse_sizes)]
        out[g, :, : rows.size] = rows[:, None] & cols[None, :]
    return out.reshape(len(patches), 2 * size * corners)


def deim_points(U: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Magic points I of the orthonormal modes U (n, m) by the DEIM greedy: each next point
    is where the next mode differs most from its interpolation at the points so far."""
    points = [int(np.argmax(np.abs(U[:, 0])))] if U.shape[1] else []
    for m in range(1, U.shape[1]):
        c = np.linalg.solve(U[points, :m], U[points, m])
        points.append(int(np.argmax(np.abs(U[:, m] - U[:, :m] @ c))))
    return np.array(points, dtype=np.int64)


def cell_interpolation(
    A: npt.NDArray[np.float64], W: npt.NDArray[np.float64], tol: float
) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray]:
    """The interpolation of one coarse cell from its training fields A (K, cells) and element
    weights W (cells, 2^d, 2^d): (magic points I_T (m,), D_T (2^2d + 1 + CHECKS, m): the rows
    of P_T(a) flattened, of the mean of a on T and of the values at the check points, each from
    a(x_{I_T}); the CHECKS check points: where the training fields' interpolation misses most
    outside I_T, then spread over T)."""
    U, s, _ = np.linalg.svd(A.T, full_matrices=False)
    m = int((s > tol * max(s[0], 1e-300)).sum()) if s.size else 0
    U = U[:, :m]
    points = deim_points(U)
    inverse = np.linalg.inv(U[points]) if m else np.zeros((0, 0))
    free = np.ones(len(U), dtype=bool)
    free[points] = False
    residual = np.abs(A - (A[:, points] @ inverse.T) @ U.T).max(axis=0)
    checks = [int(np.argmax(np.where(free, residual, -1.0)))]  # any cell if none is free
    free[checks[0]] = False
    for j in range(1, CHECKS):  # the first free cell from evenly spread positions on
        start = j * len(U) // CHECKS
        ahead = np.flatnonzero(np.roll(free, -start))
        checks.append((start + int(ahead[0] if ahead.size else 0)) % len(U))
        free[checks[-1]] = False
    rows = np.vstack([np.einsum("cm,cab->abm", U, W).reshape(-1, m), U.mean(0), U[checks]])
    return points, rows @ inverse, np.array(checks)


class ElementPart:
    """P_T(a) = sum_c a_c W_c of each patch's element T (:func:`element_weights`), placed in
    the patch's rows of T's corners: exact from a at T's fine-cell midpoints, or after
    :meth:`interpolate` from a at a few points per T (module docstring). ``kept``: the entries
    the coarse system uses (:func:`kept_entries`). Rank-local.

    Args:
        grids: The nested grids.
        patches: The patches N^l(T), one per network row.
        size: Rows of the padded operators (the largest patch's coarse vertices).
    """

    def __init__(self, grids: NestedGrids, patches: Sequence[Patch], size: int):
        d, r = grids.dim, grids.refinement
        self.corners = 2**d
        self.W = element_weights(grids.H, r)
        cells = len(self.W)
        x, pos = [], []
        for patch in patches:
            shape = np.asarray(patch.configuration.shape)
            T = np.asarray(patch.configuration.element) + np.asarray(patch.lo)
            x.append(fine_cell_midpoints(grids, box_keys(T * r, r, grids.fine_sizes)))
            rows = lattice_keys(np.asarray(patch.configuration.element) + corner_bits(d), shape + 1)
            pos.append((rows[:, None] * self.corners + np.arange(self.corners)).ravel())
        self.x = np.hstack(x) if x else np.zeros((3, 0))
        self.cells = cells
        self.positions = np.array(pos, dtype=np.int64).reshape(len(patches), self.corners**2)
        self.outputs = 2 * size * self.corners
        self.kept = kept_entries(grids, patches, size)
        #: Points (3, G (m + CHECKS)): m per T, then T's check points; None: exact.
        self.points: npt.NDArray[np.float64] | None = None
        self.D = np.zeros((len(patches), self.corners**2 + 1 + CHECKS, 0))
        self.check_tol = INTERPOLATION["check_tol"]
        #: Coarse cells that fell back to the exact element part, over all evaluations.
        self.fallbacks = 0

    def coefficient(self, family: Family, p: Any) -> npt.NDArray[np.float64]:
        """a(x, p) on T's fine cells, shape (G, prod r_k)."""
        return family.a(self.x, family.check(p)).reshape(len(self.positions), self.cells)

    def interpolate(
        self, family: Family, params: npt.NDArray, tol: float = INTERPOLATION["tol"]
    ) -> int:
        """Build the interpolation of a on every T from its fields at the training ``params``
        (module docstring). Returns the largest number of points m_T on this rank."""
        A = np.stack([self.coefficient(family, p) for p in params], axis=1)  # (G, K, cells)
        built = [cell_interpolation(A[g], self.W, tol) for g in range(len(A))]
        width = max([len(b[0]) for b in built], default=0)
        points = np.zeros((len(A), width + CHECKS), dtype=np.int64)  # padding: cell 0, D zero
        self.D = np.zeros((len(A), self.corners**2 + 1 + CHECKS, width))
        for g, (chosen, D, checks) in enumerate(built):
            points[g, : len(chosen)], points[g, width:] = chosen, checks
            self.D[g, :, : len(chosen)] = D
        cells = points + self.cells * np.arange(len(A))[:, None]
        self.set_interpolation(self.x[:, cells.ravel()].reshape(3, *cells.shape), self.D)
        return width

    def set_interpolation(self, points: npt.NDArray, D: npt.NDArray) -> None:
        """Use the points (3, G, m + CHECKS) and products D_T (G, 2^2d + 1 + CHECKS, m) (as
        :meth:`interpolate` builds them, e.g. read from a file)."""
        self.points, self.D = points.reshape(3, -1), D

    def interpolation_state(self) -> dict[str, npt.NDArray]:
        """{"points": (G, 3, m + CHECKS), "D": (G, 2^2d + 1 + CHECKS, m)} (empty without
        interpolation)."""
        if self.points is None:
            return {}
        G = len(self.D)
        points = self.points.reshape(3, G, self.D.shape[2] + CHECKS)
        return {"points": points.transpose(1, 0, 2), "D": self.D}

    def exact(self, family: Family, p: Any, rows: npt.NDArray | None = None) -> npt.NDArray:
        """[P_T(a(p)) flattened, the mean of a(p) on T] from a on T's fine cells, for the
        patches ``rows`` (default all), shape (G, 2^2d + 1)."""
        rows = np.arange(len(self.positions)) if rows is None else rows
        cells = (rows[:, None] * self.cells + np.arange(self.cells)).ravel()
        a = family.a(self.x[:, cells], family.check(p)).reshape(len(rows), self.cells)
        P = np.einsum("gc,cab->gab", a, self.W).reshape(len(rows), self.corners**2)
        return np.hstack([P, a.mean(axis=1)[:, None]])

    def values(self, family: Family, p: Any) -> tuple[npt.NDArray, npt.NDArray]:
        """(P_T(a(p)) flattened (G, 2^2d), the mean of a(p) on T (G,)): interpolated where
        the check holds, exact elsewhere (and without interpolation)."""
        c2 = self.corners**2
        if self.points is None or not len(self.positions):
            out = self.exact(family, p)
            return out[:, :c2], out[:, c2]
        v = family.a(self.points, family.check(p)).reshape(len(self.D), -1)
        out = np.einsum("gm,gnm->gn", v[:, :-CHECKS], self.D)
        mismatch = np.abs(out[:, c2 + 1 :] - v[:, -CHECKS:]).max(axis=1, initial=0.0)
        miss = mismatch > self.check_tol * np.abs(v).max(axis=1, initial=0.0)
        if miss.any():
            self.fallbacks += int(miss.sum())
            out[miss, : c2 + 1] = self.exact(family, p, np.flatnonzero(miss))
        return out[:, :c2], out[:, c2]

    def parts(self, family: Family, p: Any) -> tuple[npt.NDArray, npt.NDArray]:
        """(P_T(a(p)) padded as the operators' rows [K_T; M_T] (M part zero), shape
        (G, 2 N_max 2^d); the mean of a on T, shape (G,))."""
        P, mean = self.values(family, p)
        out = np.zeros((len(P), self.outputs))
        if len(P):
            np.put_along_axis(out, self.positions, P, axis=1)
        return out, mean

    def interpolation_error(self, family: Family, params: npt.NDArray) -> npt.NDArray:
        """The online element part against the exact one at ``params``, summed over the owned
        T and ``params``: [||P~_T - P_T||_F^2, ||P_T||_F^2, (s~_T - s_T)^2, s_T^2, cells that
        fell back], s_T the mean of a on T, shape (5,)."""
        sums = np.zeros(5)
        c2, before = self.corners**2, self.fallbacks
        for p in params:
            P, mean = self.values(family, p)
            exact = self.exact(family, p)
            sums[:2] += ((P - exact[:, :c2]) ** 2).sum(), (exact[:, :c2] ** 2).sum()
            sums[2:4] += ((mean - exact[:, c2]) ** 2).sum(), (exact[:, c2] ** 2).sum()
        sums[4] = self.fallbacks - before
        return sums
