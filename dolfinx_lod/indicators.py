"""Coefficient-only error indicators of the selective basis update (Hellman–Keil–Målqvist).

For a patch N^l(T) whose correctors C_T were computed for a_ref and a new coefficient a,

    e_T^2 = kappa_T^2 sum_{T' in N^l(T)} delta_T'^2 mu_T',

    delta_T' = max_{T'} |a - a_ref| / sqrt(a a_ref),      kappa_T^2 = max_T a_ref / a,
    mu_T'    = max_{w in Q1(T)} ||a_ref^{1/2} (chi_T grad w - grad C_T w)||^2_{T'}
                                / ||a_ref^{1/2} grad w||^2_T,

mu_T' computed once with the correctors (:meth:`CoefficientIndicator.recomputed`). e_T bounds
the corrector-based indicator of :meth:`dolfinx_lod.patch_problem.PatchProblem.indicator` and so
the change of the correctors: ||a^{1/2} grad (C_T^a - C_T^{a_ref}) w|| <= e_T ||a^{1/2} grad w||_T
(the norm over the patch). Between recomputations only the coefficient is read: per step a
few vector operations on the patch cells of the coarse cells where a changed since the last
step (rank-local: the patch cells a rank fetches cover them); no patch assembly, no eigenproblem.

Fine cells of a patch are kept in *segments*: one row of r^d fine cells per coarse cell T' of
the patch (the layout of :func:`segment_layout`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import (
    box_points,
    corner_bits,
    lattice_coordinates,
    lattice_keys,
    multilinear_weights,
)

if TYPE_CHECKING:
    from dolfinx_lod.basis import MultiscaleBasis
    from dolfinx_lod.patches import Patch


def element_stiffness(h: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Q1 element stiffness int grad phi_j . grad phi_i on a cell of sizes h (a = 1), shape
    (2^d, 2^d), corners in :func:`~dolfinx_lod.grids.corner_bits` order."""
    h = np.asarray(h, dtype=np.float64)
    K1 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    M1 = np.array([[1.0, 0.5], [0.5, 1.0]]) / 3.0
    K = np.zeros((2**h.size, 2**h.size))
    for k in range(h.size):
        term = np.ones((1, 1))
        for j in range(h.size):  # x fastest: x is the last Kronecker factor
            term = np.kron(K1 / h[j] if j == k else M1 * h[j], term)
        K += term
    return K


class SegmentLayout:
    """Fine cells and vertices of a patch shape by coarse cell T' (lattice order, x fastest).

    Attributes: ``cells`` (n_T', r^d) local patch cell indices; ``vertices`` (n_T', r^d, 2^d)
    local vertex indices of those cells; ``hats`` (r^d, 2^d, 2^d) the coarse hats of the
    corners of a coarse cell at the vertices of its fine cells (the same for every T').
    """

    def __init__(self, shape: tuple[int, ...], r: tuple[int, ...]):
        w, r_ = np.asarray(shape), np.asarray(r)
        d = w.size
        fine = box_points(r_)
        cells = box_points(w)[:, None, :] * r_ + fine[None, :, :]
        self.cells = lattice_keys(cells.reshape(-1, d), w * r_).reshape(cells.shape[:2])
        corners = corner_bits(d)
        verts = cells[:, :, None, :] + corners[None, None]
        self.vertices = lattice_keys(verts.reshape(-1, d), w * r_ + 1).reshape(verts.shape[:3])
        local = (fine[:, None, :] + corners[None]).reshape(-1, d) / r_
        self.hats = multilinear_weights(local).reshape(fine.shape[0], corners.shape[0], -1)


@functools.cache
def segment_layout(shape: tuple[int, ...], r: tuple[int, ...]) -> SegmentLayout:
    """The (cached) :class:`SegmentLayout` of a patch shape."""
    return SegmentLayout(shape, r)


def _constants_complement(m: int) -> npt.NDArray[np.float64]:
    """Orthonormal basis (m, m - 1) of the complement of the constants in R^m."""
    return np.linalg.qr(np.vstack([np.ones(m), np.eye(m)[: m - 1]]).T)[0][:, 1:]


def coarse_cell_weights(
    layout: SegmentLayout,
    element: int,
    K: npt.NDArray[np.float64],
    a_ref: npt.NDArray[np.float64],
    C: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """mu_T' for every coarse cell T' of a patch (segment order), from the correctors C (local
    vertex order, (n_vertices, 2^d)) computed for a_ref (local cell order); ``element``: the
    segment of T, K: :func:`element_stiffness`. Both quadratic forms vanish on constants."""
    V = -C[layout.vertices]  # (n_T', r^d, 2^d corners of the cell, 2^d hats)
    V[element] += layout.hats
    a = a_ref[layout.cells]
    L = np.einsum("tc,tcim,ij,tcjn->tmn", a, V, K, V, optimize=True)
    H = layout.hats
    D = np.einsum("c,cim,ij,cjn->mn", a[element], H, K, H, optimize=True)
    Q = _constants_complement(C.shape[1])
    Linv = np.linalg.inv(np.linalg.cholesky(Q.T @ D @ Q))
    R = Linv @ Q.T
    mu = np.linalg.eigvalsh(R @ L @ R.T).max(axis=-1)
    return np.maximum(mu, 0.0)


class CoefficientIndicator:
    """e_T of all owned patches of a basis, kept up to date from the coefficient alone.

    Per segment (patch, T') it keeps a_ref on the r^d fine cells, delta_T'^2, max a_ref / a
    and mu_T'. Call :meth:`indicators` before an update and :meth:`recomputed` after it.
    """

    def __init__(self, basis: MultiscaleBasis):
        self.basis = basis
        g = basis.grids
        self._K = element_stiffness(g.h)
        rows, coarse, element, starts = [], [], [], [0]
        for patch, index in zip(basis.patches, basis.cell_index, strict=True):
            shape = patch.configuration.shape
            layout = segment_layout(shape, tuple(int(r) for r in g.refinement))
            rows.append(index[layout.cells])
            coarse.append(lattice_keys(box_points(shape) + np.asarray(patch.lo), g.coarse_sizes))
            T = lattice_keys(np.array([patch.configuration.element]), shape)[0]
            element.append(starts[-1] + T)
            starts.append(starts[-1] + layout.cells.shape[0])
        cat = np.concatenate
        self._rows = cat(rows) if rows else np.empty((0, int(np.prod(g.refinement))), np.int64)
        self._coarse = cat(coarse) if coarse else np.empty(0, np.int64)
        self._element = np.asarray(element, dtype=np.int64)
        self._starts = np.asarray(starts, dtype=np.int64)
        n = self._coarse.size
        self._delta2, self._kappa2, self._mu = np.zeros(n), np.ones(n), np.zeros(n)
        self._log_ref = np.zeros(self._rows.shape)  # log a_ref per segment
        self._is_element = np.zeros(n, dtype=bool)
        self._is_element[self._element] = True
        self._previous: npt.NDArray[np.float64] | None = None  # a_local of the last call
        # Coarse cell of each cell of the union of the owned patches (a_local order).
        ij = lattice_coordinates(basis.cell_keys, g.fine_sizes, g.dim) // g.refinement
        self._cell_coarse = lattice_keys(ij, g.coarse_sizes)

    def _changed_segments(self, a_local: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Mask over the segments whose coarse cell T' holds a fine cell where a changed since
        the last call (a_local covers every patch cell: rank-local)."""
        if self._previous is None:
            return np.ones(self._coarse.size, dtype=bool)
        flags = np.zeros(int(np.prod(self.basis.grids.coarse_sizes)), dtype=bool)
        flags[self._cell_coarse[a_local != self._previous]] = True
        return flags[self._coarse]

    def indicators(self, a_local: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """e_T of every owned patch for the coefficient ``a_local`` (values on the union of the
        owned patches' cells, ``basis.local_coefficient`` order). Rank-local."""
        todo = np.flatnonzero(self._changed_segments(a_local))
        self._previous = a_local.copy()
        if todo.size:
            every = todo.size == self._coarse.size  # no copies of the stored rows
            x = np.log(a_local)[self._rows if every else self._rows[todo]]
            x -= self._log_ref if every else self._log_ref[todo]  # log(a / a_ref)
            element = self._is_element[todo]
            self._kappa2[todo[element]] = np.exp(-x[element].min(axis=1))  # max a_ref / a
            # (a - a_ref)^2 / (a a_ref) = (2 sinh(x / 2))^2 grows with |x|.
            self._delta2[todo] = (2.0 * np.sinh(np.abs(x, out=x).max(axis=1) / 2.0)) ** 2
        if self._starts.size == 1:
            return np.zeros(0)
        sums = np.add.reduceat(self._delta2 * self._mu, self._starts[:-1])
        return np.sqrt(self._kappa2[self._element] * sums)

    def weights(
        self, patch: Patch, a: npt.NDArray[np.float64], C: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """mu_T' of a patch (segment order) from its correctors C computed for a (local patch
        orders). Depends on the patch's shape and configuration only: any rank computes it."""
        shape = patch.configuration.shape
        layout = segment_layout(shape, tuple(int(r) for r in self.basis.grids.refinement))
        element = int(lattice_keys(np.array([patch.configuration.element]), shape)[0])
        return coarse_cell_weights(layout, element, self._K, a, C)

    def recomputed(
        self,
        index: npt.NDArray[np.int64],
        a_patches: list[npt.NDArray[np.float64]],
        correctors: list[npt.NDArray[np.float64]],
        weights: list[npt.NDArray[np.float64]] | None = None,
    ) -> None:
        """Take a_ref and mu_T' of the patches ``index`` whose correctors were just computed
        for ``a_patches[i]`` (``weights``: their mu_T' in the order of ``index``, computed
        with the correctors; else computed here). Rank-local."""
        r = tuple(int(x) for x in self.basis.grids.refinement)
        for k, i in enumerate(index):
            s, e = self._starts[i], self._starts[i + 1]
            patch, a = self.basis.patches[i], a_patches[i]
            layout = segment_layout(patch.configuration.shape, r)
            self._log_ref[s:e] = np.log(a[layout.cells])
            self._delta2[s:e], self._kappa2[s:e] = 0.0, 1.0
            mu = weights[k] if weights is not None else self.weights(patch, a, correctors[i])
            self._mu[s:e] = mu
