"""The fine space of a patch shape: a DOLFINx box mesh on COMM_SELF, its Q1 space, the
constraint rows of I_H and the Dirichlet vertices (built once per shape and reused).

The patch stiffness is linear in the cell values of a and the cells are equal boxes, so it is
assembled as S = sum_c a_c K_c (K_c the Q1 element stiffness for a = 1, scattered to fixed
positions of the CSR data): per coefficient only values change; the sparsity, the scatter
positions and the element matrices are computed once per shape."""

from __future__ import annotations

import functools

import dolfinx.fem
import dolfinx.la
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.forms import mass_form, stiffness_form
from dolfinx_lod.grids import (
    NestedGrids,
    box_mesh,
    lattice_index,
    lattice_keys,
)
from dolfinx_lod.indicators import element_stiffness
from dolfinx_lod.interpolation import patch_dirichlet_vertices


class PatchSpace:
    """The fine Q1 space of a patch shape (wx x wy [x wz] coarse cells) and its Dirichlet
    sides, shared by all configurations with both: mesh, spaces, coefficient Functions,
    stiffness form and matrices.

    DOLFINx meshes, spaces and matrices each hold MPI communicators (a few per object, and MPI
    allows about 2000), so they are created once per shape, not per configuration.

    Args:
        shape: Coarse cells of the patch per direction.
        grids: Nested meshes (fine cells per coarse cell, mesh sizes).
        sides: (d, 2) mask of the patch sides where the correctors vanish
            (:meth:`~dolfinx_lod.patches.Configuration.dirichlet_sides`); None: all.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        grids: NestedGrids,
        sides: npt.NDArray[np.bool_] | None = None,
    ):
        r, d = grids.refinement, grids.dim
        cells_per_axis = np.asarray(shape) * r
        origin = (0.0,) * d
        extent = tuple(float(w * H) for w, H in zip(shape, grids.H, strict=True))
        self.mesh = box_mesh(
            MPI.COMM_SELF, (origin, extent), tuple(cells_per_axis), ghost_mode=None
        )
        self.V = dolfinx.fem.functionspace(self.mesh, ("Lagrange", 1))
        Q = dolfinx.fem.functionspace(self.mesh, ("DG", 0))
        self.num_cells = self.mesh.topology.index_map(d).size_local
        # Maps between DOLFINx numbering and the patch's lattice numbering.
        self.dof_lattice = lattice_index(self.V.tabulate_dof_coordinates(), origin, grids.h)
        self.dof_vertex = lattice_keys(self.dof_lattice, cells_per_axis + 1)
        cells = np.arange(self.num_cells, dtype=np.int32)
        mid = dolfinx.mesh.compute_midpoints(self.mesh, d, cells)
        self.cell_lattice_ij = np.floor(mid[:, :d] / grids.h).astype(np.int64)
        self.cell_dofs = Q.dofmap.list[:, 0]
        self.cell_lattice = lattice_keys(self.cell_lattice_ij, cells_per_axis)
        self.a = dolfinx.fem.Function(Q)  # a on the patch
        self.c = dolfinx.fem.Function(Q)  # capacity c on the patch (local coarse operators)
        self.weight = dolfinx.fem.Function(Q)  # (a - a_ref)^2 / a, for the error indicator

        sides = np.ones((d, 2), dtype=bool) if sides is None else sides
        fixed = patch_dirichlet_vertices(cells_per_axis, sides)[self.dof_vertex]
        self.boundary_dofs = np.flatnonzero(fixed).astype(np.int32)
        self.bc = dolfinx.fem.dirichletbc(0.0, self.boundary_dofs, self.V)
        self.S_form = stiffness_form(self.V, self.a)
        #: S without boundary conditions (S_full) and with the patch boundary rows/columns
        #: replaced by the identity (S, the saddle-point block); same sparsity.
        self.S_full = dolfinx.fem.assemble_matrix(self.S_form)
        self.S = dolfinx.fem.assemble_matrix(self.S_form, [self.bc])
        rows = np.repeat(np.arange(self.S.indptr.size - 1), np.diff(self.S.indptr))
        on_boundary = np.zeros(self.S.indptr.size - 1, dtype=bool)
        on_boundary[self.boundary_dofs] = True
        self._bc_zero = on_boundary[rows] | on_boundary[self.S.indices]
        self.bc_diagonal = self._bc_zero & (rows == self.S.indices)
        self._S_rows = rows
        self._setup_cell_matrices(grids)
        self.Mc_form = mass_form(self.V, self.c)
        self.Mc = dolfinx.fem.assemble_matrix(self.Mc_form)
        self._c_values: npt.NDArray[np.float64] | None = None  # c of Mc
        #: Count of stiffness assemblies (S belongs to the last problem that assembled it).
        self.assemblies = 0
        self._work: dolfinx.la.MatrixCSR | None = None
        self._views: dict[int, tuple[dolfinx.la.MatrixCSR, PETSc.Mat]] = {}

    def _setup_cell_matrices(self, grids: NestedGrids) -> None:
        """K_c of every cell (DOLFINx cell order, (n_cells, 2^d x 2^d)) and the positions of its
        entries in the CSR data of S: the plan of :meth:`assemble_stiffness`."""
        d = grids.dim
        cells = self.V.dofmap.list[: self.num_cells].astype(np.int64)
        corner = self.dof_lattice[cells] - self.dof_lattice[cells].min(axis=1, keepdims=True)
        bits = lattice_keys(corner.reshape(-1, d), 2).reshape(cells.shape)
        K = element_stiffness(grids.h)
        self.cell_dofs_list = cells
        self._cell_matrices = K[bits[:, :, None], bits[:, None, :]]  # (n_cells, 2^d, 2^d)
        n = self.S.indptr.size - 1
        keys = self._S_rows * n + self.S.indices  # sorted: rows, then columns
        wanted = (cells[:, :, None] * n + cells[:, None, :]).ravel()
        self._cell_entries = np.searchsorted(keys, wanted)

    def cell_coefficients(self, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """a on the cells in DOLFINx cell order, from values in local patch cell order."""
        return a_patch[self.cell_lattice]

    def stiffness_action(
        self,
        a_patch: npt.NDArray[np.float64],
        X: npt.NDArray[np.float64],
        cells: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float64]:
        """(sum_{c in cells} a_c K_c) X: the stiffness of the DOLFINx cells ``cells`` times X
        (dof order, shape (n, k)), element by element."""
        dofs = self.cell_dofs_list[cells]
        a = self.cell_coefficients(a_patch)[cells]
        local = (self._cell_matrices[cells] @ X[dofs]) * a[:, None, None]
        n = X.shape[0]
        return np.stack(
            [np.bincount(dofs.ravel(), local[:, :, k].ravel(), n) for k in range(X.shape[1])],
            axis=1,
        )

    def assemble_stiffness(self, a_patch: npt.NDArray[np.float64]) -> None:
        """Assemble S_full and S for coefficient values ``a_patch`` (local cell order):
        S_full = sum_c a_c K_c, the values only (fixed sparsity and scatter positions)."""
        self.set_cells(self.a, a_patch)
        self.assemblies += 1
        weights = self._cell_matrices * self.cell_coefficients(a_patch)[:, None, None]
        self.S_full.data[:] = np.bincount(
            self._cell_entries, weights.ravel(), self.S_full.data.size
        )
        self.S.data[:] = np.where(self._bc_zero, 0.0, self.S_full.data)
        self.S.data[self.bc_diagonal] = 1.0

    def assemble_capacity(self, c_patch: npt.NDArray[np.float64]) -> None:
        """Set c and assemble Mc for capacity values ``c_patch`` (skipped if unchanged)."""
        if self._c_values is None or not np.array_equal(self._c_values, c_patch):
            self.set_cells(self.c, c_patch)
            self.Mc.data[:] = 0.0
            dolfinx.fem.assemble_matrix(self.Mc, self.Mc_form)
            self._c_values = np.array(c_patch, copy=True)

    def matmul(self, A: dolfinx.la.MatrixCSR, X: npt.NDArray[np.float64]) -> npt.NDArray:
        """A X for a CSR matrix A of this space (X in dof order, shape (n, k)), through a
        PETSc matrix that shares A's values (created once per A)."""
        if id(A) not in self._views:
            n = A.indptr.size - 1
            csr = (A.indptr.astype(PETSc.IntType), A.indices.astype(PETSc.IntType), A.data)
            view = PETSc.Mat().createAIJWithArrays((n, n), csr, comm=MPI.COMM_SELF)
            self._views[id(A)] = (A, view)  # A kept: its id stays unique
        view = self._views[id(A)][1]
        Xm = PETSc.Mat().createDense(X.shape, array=np.asfortranarray(X), comm=MPI.COMM_SELF)
        Ym = view.matMult(Xm)
        Y = Ym.getDenseArray().copy()
        Xm.destroy()
        Ym.destroy()
        return Y

    def destroy(self) -> None:
        """Free the PETSc views of :meth:`matmul`."""
        for _, view in self._views.values():
            view.destroy()
        self._views.clear()

    @functools.cached_property
    def vertex_csr(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The pattern of S in local vertex order: (row offsets, columns, positions in
        ``S.data``), rows and columns sorted."""
        S, v = self.S, self.dof_vertex
        rows = v[np.repeat(np.arange(S.indptr.size - 1), np.diff(S.indptr))]
        cols = v[S.indices]
        order = np.lexsort((cols, rows))
        crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=v.size))])
        return crow, cols[order], order

    def set_cells(self, f: dolfinx.fem.Function, values: npt.NDArray[np.float64]) -> None:
        """Set a DG0 Function from values in local patch cell order."""
        f.x.array[self.cell_dofs] = values[self.cell_lattice]

    def quadratic(
        self, form: dolfinx.fem.Form, X: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """X^T A X for the matrix A of a bilinear ``form`` on this space (X in dof order),
        assembled into a work matrix with the full patch sparsity."""
        if self._work is None:
            self._work = dolfinx.fem.assemble_matrix(self.S_form)
        A = self._work
        A.data[:] = 0.0
        dolfinx.fem.assemble_matrix(A, form)
        return X.T @ self.matmul(A, X)
