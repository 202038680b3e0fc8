"""Incremental Galerkin coarse matrix K = B^T A B, A = Mc / tau + S(a), after local changes.

With A_new = A + dA (dA = S(a_new) - S(a) on the fine cells where a changed) and
B_new = B + dB (dB = -sum (C_T^new - C_T) over the recomputed patches,
:meth:`~dolfinx_lod.basis.MultiscaleBasis.difference`),

    K_new = K + B_new^T dA B_new + B_new^T Z + Z^T B,      Z = A dB,

each term a product with a sparse factor whose size follows the changed cells and the
recomputed patches, not N_h: the products are formed as (X^T B)^T with the small explicit
transposes X^T = (dA B_new)^T, (A dB)^T. :class:`GalerkinOperator` chooses this update when
the changed fraction is small, otherwise the full product (:class:`~dolfinx_lod.lod.CoarseProduct`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from petsc4py import PETSc

from dolfinx_lod.grids import NestedGrids, lattice_index, lattice_keys
from dolfinx_lod.indicators import element_stiffness
from dolfinx_lod.lod import CoarseProduct, FineSystem, coarse_boundary_rows
from dolfinx_lod.parallel import PETScResource

if TYPE_CHECKING:
    from dolfinx_lod.basis import MultiscaleBasis

#: Largest fraction of recomputed patches (and of changed fine cells) for which
#: :class:`GalerkinOperator` updates K incrementally instead of forming the full product.
INCREMENTAL_FRACTION = 0.25


def shifted(target: PETSc.Mat | None, S: PETSc.Mat, Mc: PETSc.Mat, tau: float) -> PETSc.Mat:
    """target = S + Mc / tau (created from S on first use). Collective."""
    if target is None:
        target = S.copy()
    else:
        target.zeroEntries()
        target.axpy(1.0, S, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
    target.axpy(1.0 / tau, Mc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
    return target


class StiffnessChange:
    """dS = S(a_new) - S(a_old) from the Q1 element matrices of the owned fine cells where a
    changed (uniform cells: one reference matrix), Dirichlet rows and columns dropped."""

    def __init__(self, grids: NestedGrids):
        V = grids.V_h
        owned = grids.fine_cell_keys.size
        cells = V.dofmap.list[:owned]
        lattice = lattice_index(V.tabulate_dof_coordinates(), grids.origin, grids.h)
        corner = lattice[cells] - lattice[cells].min(axis=1, keepdims=True)
        self._bits = lattice_keys(corner.reshape(-1, grids.dim), 2).reshape(cells.shape)
        self._dofs = V.dofmap.index_map.local_to_global(cells.ravel()).reshape(cells.shape)
        free = np.ones(lattice.shape[0], dtype=bool)
        free[grids.dirichlet_dofs(V)] = False
        self._free = free[cells]
        self._K = element_stiffness(grids.h)
        self.grids = grids

    def matrix(self, sizes, cells: npt.NDArray[np.int64], da: npt.NDArray) -> PETSc.Mat:
        """dS for the owned cells ``cells`` with coefficient changes ``da``, a new matrix of
        ``sizes`` (the caller owns it). Collective."""
        bits, dofs, free = self._bits[cells], self._dofs[cells], self._free[cells]
        values = self._K[bits[:, :, None], bits[:, None, :]] * da[:, None, None]
        n = bits.shape[1]
        rows = np.repeat(dofs, n, axis=1).ravel()
        cols = np.tile(dofs, (1, n)).ravel()
        keep = (free[:, :, None] & free[:, None, :]).ravel()
        M = PETSc.Mat().create(comm=self.grids.comm)
        M.setSizes(sizes)
        M.setType(PETSc.Mat.Type.AIJ)
        M.setPreallocationCOO(rows[keep].astype(PETSc.IntType), cols[keep].astype(PETSc.IntType))
        M.setValuesCOO(values.ravel()[keep], addv=PETSc.InsertMode.INSERT_VALUES)
        return M


def _transposed_product(X: PETSc.Mat, B: PETSc.Mat) -> PETSc.Mat:
    """X^T B with an explicit (small) transpose of X. Collective."""
    Xt = X.transpose(PETSc.Mat())  # without a target petsc4py transposes in place
    out = Xt.matMult(B)
    Xt.destroy()
    return out


class GalerkinOperator(PETScResource):
    """K = B^T (Mc/tau + S(a)) B of the Galerkin LOD, updated from the last step's K when
    few patches were recomputed and few fine cells changed (see the module docstring).

    Use: :meth:`before_basis` after ``basis.update(..., assemble=False)`` (B still the previous
    basis), then :meth:`after_basis` once B is assembled. ``products`` counts full fine
    products, ``updates`` incremental updates. Collective.
    """

    def __init__(self, grids: NestedGrids, fine: FineSystem, tau: float):
        self.grids, self.fine, self.tau = grids, fine, tau
        self._product = CoarseProduct(grids)
        self._change = StiffnessChange(grids)
        self._boundary = coarse_boundary_rows(grids)
        self.A: PETSc.Mat | None = None
        self.K: PETSc.Mat | None = None
        self._a: npt.NDArray[np.float64] | None = None
        self._pending: dict[str, PETSc.Mat] = {}
        self._incremental = False
        self.products = self.updates = 0

    def before_basis(self, basis: MultiscaleBasis, a: npt.NDArray[np.float64]) -> None:
        """Plan the update for the owned values ``a`` of the new coefficient, using the
        previous B (call before B is reassembled)."""
        comm = self.grids.comm
        changed = np.flatnonzero(a != self._a) if self._a is not None else np.empty(0, int)
        fraction = comm.allreduce(changed.size) / self.grids.num_fine_cells
        patches = basis.num_recomputed / max(comm.allreduce(len(basis.patches)), 1)
        self._incremental = self.K is not None and max(fraction, patches) <= INCREMENTAL_FRACTION
        if not self._incremental:
            self._a = a.copy()
            return
        if basis.num_recomputed:
            dB = basis.difference()
            Z = self.A.matMult(dB)
            self._pending = {"dB": dB, "Z": Z, "ZtB_old": _transposed_product(Z, basis.B)}
        if fraction > 0:
            dA = self._change.matrix(self.A.getSizes(), changed, a[changed] - self._a[changed])
            self._pending["dA"] = dA
            self._a[changed] = a[changed]

    def after_basis(self, B: PETSc.Mat, version: int) -> PETSc.Mat:
        """K for the new coefficient and basis B (assembled). Collective."""
        if not self._incremental:
            S = self.fine.assemble_stiffness()
            self.A = shifted(self.A, S, self.fine.Mc, self.tau)
            self.K = self._product(self.A, B, version=version)
            self.products += 1
            return self.K
        terms = []
        pending = self._pending
        if "Z" in pending:  # B_new^T Z + Z^T B_old
            BtZ = _transposed_product(pending["Z"], B).transpose()  # in place: B_new^T Z
            terms += [BtZ, pending["ZtB_old"]]
        if "dA" in pending:  # B_new^T dA B_new, then A += dA
            E = pending["dA"].matMult(B)
            terms.append(_transposed_product(E, B))
            E.destroy()
            self.A.axpy(1.0, pending["dA"], structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        for X in terms:  # K keeps its identity rows and columns at the boundary vertices
            X.zeroRowsColumns(self._boundary, diag=0.0)
            self.K.axpy(1.0, X, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
            if X is not pending.get("ZtB_old"):
                X.destroy()
        self.destroy_pending()
        self.updates += 1
        return self.K

    def destroy_pending(self) -> None:
        """Free the factors of a planned update."""
        for obj in self._pending.values():
            obj.destroy()
        self._pending = {}

    def destroy(self) -> None:
        """Free the PETSc objects (K included)."""
        self.destroy_pending()
        self._product.destroy()
        if self.A is not None:
            self.A.destroy()
