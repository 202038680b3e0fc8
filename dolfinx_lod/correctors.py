"""Classical element correctors C_T^l Lambda_j (paper (7)) by patch saddle-point solves.

For a patch N^l(T) with fine stiffness S (zero Dirichlet values on the patch boundary) and
constraint matrix B = I_H restricted to the patch, the four correctors of T solve

    [ S  B^T ] [ C_j ]   [ F_j ]
    [ B   0  ] [ mu  ] = [  0  ],      F_j = (v -> int_T a grad Lambda_j . grad v),

for the corners j of T, with one factorization per patch (MUMPS LDL^T) and all four
right-hand sides at once. Everything that depends only on the patch configuration (mesh,
compiled forms, constraint rows, sparsity, symbolic factorization) is built once and reused.
Rank-local: no communication.
"""

from __future__ import annotations

from typing import Protocol

import dolfinx.fem
import dolfinx.la
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.forms import element_load_form, stiffness_form
from dolfinx_lod.grids import NestedGrids, lattice_index
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.patches import Configuration, Patch

#: Default PETSc options of the patch solvers (prefix ``lod_patch_``; override with PETSc
#: options such as ``-lod_patch_pc_factor_mat_solver_type``).
PATCH_SOLVER_OPTIONS = {
    "ksp_type": "preonly",
    "pc_type": "cholesky",
    "pc_factor_mat_solver_type": "mumps",
    "mat_mumps_icntl_7": 0,  # AMD ordering: the fastest numeric factorization measured here
}


class CorrectorProvider(Protocol):
    """Anything that produces the element correctors of a patch for a coefficient."""

    def correctors(self, patch: Patch, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Correctors C_T Lambda_j on the patch's fine vertices.

        Args:
            patch: N^l(T).
            a_patch: Coefficient on the patch's fine cells (local patch order).

        Returns:
            Array (n_vertices, 4): column j is C_T Lambda_j for T's corner j in the order
            (0,0), (1,0), (0,1), (1,1); rows follow the patch's local vertex order.
        """
        ...


class PatchProblem:
    """The saddle-point problem of one patch configuration, set up once, solved per patch."""

    prefix = "lod_patch_"

    def __init__(self, config: Configuration, grids: NestedGrids, Pi: npt.NDArray[np.float64]):
        r = grids.r
        wx, wy = config.shape
        tx, ty = config.element
        mesh = dolfinx.mesh.create_rectangle(
            MPI.COMM_SELF,
            ((0.0, 0.0), (wx * grids.H[0], wy * grids.H[1])),
            (wx * r, wy * r),
            dolfinx.mesh.CellType.quadrilateral,
        )
        V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        Q = dolfinx.fem.functionspace(mesh, ("DG", 0))
        ncells = mesh.topology.index_map(2).size_local
        # Maps between DOLFINx numbering and the patch's lattice numbering.
        ij = lattice_index(V.tabulate_dof_coordinates(), (0.0, 0.0), grids.h)
        self.dof_vertex = ij[:, 1] * (wx * r + 1) + ij[:, 0]
        mid = dolfinx.mesh.compute_midpoints(mesh, 2, np.arange(ncells, dtype=np.int32))
        cij = np.floor(mid[:, :2] / grids.h).astype(np.int64)
        self.cell_dofs = Q.dofmap.list[:, 0]
        self.cell_lattice = cij[:, 1] * (wx * r) + cij[:, 0]
        self.a = dolfinx.fem.Function(Q)

        mesh.topology.create_connectivity(1, 2)
        facets = dolfinx.mesh.exterior_facet_indices(mesh.topology)
        self.boundary_dofs = dolfinx.fem.locate_dofs_topological(V, 1, facets)
        self.bc = dolfinx.fem.dirichletbc(0.0, self.boundary_dofs, V)
        self.S_form = stiffness_form(V, self.a)
        self.S = dolfinx.fem.assemble_matrix(self.S_form, [self.bc])

        # Right-hand sides: int_T a grad Lambda_j . grad v; cells of T tagged 1, others 2.
        in_T = (cij[:, 0] // r == tx) & (cij[:, 1] // r == ty)
        tags = dolfinx.mesh.meshtags(
            mesh, 2, np.arange(ncells, dtype=np.int32), np.where(in_T, 1, 2).astype(np.int32)
        )
        X = ij / r  # dof positions in coarse-cell units
        self.hats = []
        for cx, cy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            hat = dolfinx.fem.Function(V)
            hat.x.array[:] = np.maximum(0, 1 - np.abs(X[:, 0] - tx - cx)) * np.maximum(
                0, 1 - np.abs(X[:, 1] - ty - cy)
            )
            self.hats.append(hat)
        self.load_forms = [element_load_form(V, self.a, hat, tags, 1) for hat in self.hats]
        # Error indicator: weighted stiffness on T and on the rest of the patch, a-energy on T.
        self.weight = dolfinx.fem.Function(Q)
        self._indicator_forms = [
            stiffness_form(V, self.weight, tags, 1),
            stiffness_form(V, self.weight, tags, 2),
            stiffness_form(V, self.a, tags, 1),
        ]
        self._indicator_matrices = [dolfinx.fem.assemble_matrix(f) for f in self._indicator_forms]

        # Saddle-point matrix [[S, B^T], [B, 0]] in CSR with a fixed pattern.
        B = patch_constraints(config, r, Pi)[:, self.dof_vertex]  # columns in dof order
        self.num_dofs, self.num_constraints = self.dof_vertex.size, B.shape[0]
        self._setup_saddle(B)
        self._setup_solver()

    def _setup_saddle(self, B: npt.NDArray[np.float64]) -> None:
        N = self.num_dofs
        S_rows = np.repeat(np.arange(N), np.diff(self.S.indptr))
        b_rows, b_cols = np.nonzero(B)
        b_vals = B[b_rows, b_cols]
        rows = np.concatenate([S_rows, b_cols, N + b_rows])
        cols = np.concatenate([self.S.indices, N + b_rows, b_cols])
        vals = np.concatenate([np.zeros(S_rows.size), b_vals, b_vals])
        order = np.lexsort((cols, rows))
        self._S_position = np.argsort(order)[: S_rows.size]  # where S.data goes
        self._values = vals[order]
        size = N + self.num_constraints
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=size))]).astype(
            PETSc.IntType
        )
        self._indices = cols[order].astype(PETSc.IntType)
        self.K = PETSc.Mat().createAIJ(
            (size, size), csr=(self._indptr, self._indices, self._values), comm=MPI.COMM_SELF
        )
        self.K.setOption(PETSc.Mat.Option.SYMMETRIC, True)

    def _setup_solver(self) -> None:
        opts = PETSc.Options()
        for key, value in PATCH_SOLVER_OPTIONS.items():
            if not opts.hasName(self.prefix + key):
                opts.setValue(self.prefix + key, value)
        self.ksp = PETSc.KSP().create(MPI.COMM_SELF)
        self.ksp.setOptionsPrefix(self.prefix)
        self.ksp.setOperators(self.K)
        self.ksp.setFromOptions()
        size = self.num_dofs + self.num_constraints
        self.rhs = PETSc.Mat().createDense((size, 4), comm=MPI.COMM_SELF)
        self.rhs.setUp()
        self.rhs.assemble()
        self.sol = self.rhs.duplicate()

    def solve(self, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Correctors (n_vertices, 4) for coefficient values ``a_patch`` (local cell order)."""
        self.a.x.array[self.cell_dofs] = a_patch[self.cell_lattice]
        self.S.data[:] = 0.0
        dolfinx.fem.assemble_matrix(self.S, self.S_form, [self.bc])
        self._values[self._S_position] = self.S.data
        self.K.setValuesCSR(self._indptr, self._indices, self._values)
        self.K.assemble()
        F = self.rhs.getDenseArray()
        F[:] = 0.0
        for j, L in enumerate(self.load_forms):
            dolfinx.fem.assemble_vector(F[: self.num_dofs, j], L)
        F[self.boundary_dofs] = 0.0
        self.rhs.assemble()
        self.ksp.matSolve(self.rhs, self.sol)
        C = np.empty((self.num_dofs, 4))
        C[self.dof_vertex] = self.sol.getDenseArray()[: self.num_dofs]
        return C

    def indicator(
        self,
        a_new: npt.NDArray[np.float64],
        a_ref: npt.NDArray[np.float64],
        C_ref: npt.NDArray[np.float64],
    ) -> float:
        """Error indicator e_T of the correctors ``C_ref`` (computed for ``a_ref``) when the
        coefficient becomes ``a_new`` (Hellman & Målqvist, Numerical homogenization of
        elliptic PDEs with similar coefficients, MMS 2019):

            e_T = max_{w in Q1(T)} ||(a - a_ref) a^{-1/2} (chi_T grad w - grad C_ref w)||
                                   / ||a^{1/2} grad w||_{L2(T)},

        the L2 norm over the patch. Zero when the coefficient did not change on the patch.
        """
        self.weight.x.array[self.cell_dofs] = ((a_ref - a_new) ** 2 / a_new)[self.cell_lattice]
        self.a.x.array[self.cell_dofs] = a_new[self.cell_lattice]
        Phi = np.stack([hat.x.array for hat in self.hats], axis=1)  # dof order
        C = C_ref[self.dof_vertex]
        W_T, W_rest, S_T = self._indicator_matrices
        for A, form in zip(self._indicator_matrices, self._indicator_forms, strict=True):
            A.data[:] = 0.0
            dolfinx.fem.assemble_matrix(A, form)
        N = _quadratic(W_T, Phi - C) + _quadratic(W_rest, C)
        D = _quadratic(S_T, Phi)
        # Q1(T) modulo constants (both forms vanish on constants).
        Q = np.linalg.qr(np.vstack([np.ones(4), np.eye(4)[:3]]).T)[0][:, 1:]
        L = np.linalg.cholesky(Q.T @ D @ Q)
        Linv = np.linalg.inv(L)
        return float(np.sqrt(max(np.linalg.eigvalsh(Linv @ (Q.T @ N @ Q) @ Linv.T).max(), 0.0)))

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for obj in (self.ksp, self.K, self.rhs, self.sol):
            obj.destroy()


def _quadratic(A: dolfinx.la.MatrixCSR, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """X^T A X for a rank-local CSR matrix A and a dense block X."""
    rows = np.repeat(np.arange(A.indptr.size - 1), np.diff(A.indptr))
    n = X.shape[0]
    AX = np.stack([np.bincount(rows, A.data * X[A.indices, k], n) for k in range(X.shape[1])], 1)
    return X.T @ AX


class ClassicalCorrectors:
    """The classical corrector provider: patch saddle-point solves, one PatchProblem per
    configuration (created on first use and kept)."""

    def __init__(self, grids: NestedGrids, Pi: npt.NDArray[np.float64]):
        self.grids, self.Pi = grids, Pi
        self._problems: dict[Configuration, PatchProblem] = {}

    def problem(self, config: Configuration) -> PatchProblem:
        """The (cached) PatchProblem of a configuration."""
        if config not in self._problems:
            self._problems[config] = PatchProblem(config, self.grids, self.Pi)
        return self._problems[config]

    def correctors(self, patch: Patch, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.problem(patch.configuration).solve(a_patch)

    def destroy(self) -> None:
        """Free all patch solvers."""
        for problem in self._problems.values():
            problem.destroy()
        self._problems.clear()
