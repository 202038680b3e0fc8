"""The saddle-point problem of one patch configuration (paper (7)), set up once and solved per
patch: [[S, B^T], [B, 0]] [C_j; mu] = [F_j; 0] for the corners j of T, one MUMPS LDL^T
factorization per patch and all right-hand sides at once. Rank-local."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import dolfinx.fem
import dolfinx.la
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.forms import element_mass_load_form, stiffness_form
from dolfinx_lod.grids import (
    box_points,
    corner_bits,
    lattice_keys,
)
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.parallel import PETScResource
from dolfinx_lod.patch_solver import (  # noqa: F401  (public names of this module)
    PATCH_OPTIONS_PREFIX,
    PATCH_SOLVER_OPTIONS,
    PatchSolverOptions,
    SaddleSolver,
)
from dolfinx_lod.patch_space import PatchSpace
from dolfinx_lod.patches import Configuration


class PatchSolveError(RuntimeError):
    """A patch saddle-point factorization or solve failed (rank-local)."""


@dataclass(frozen=True)
class PatchSystem:
    """The patch problem of one coefficient, in the patch's local vertex order (rank-local).

    Attributes:
        crow: CSR row offsets of S, shape (n + 1,).
        cols: CSR column indices of S (sorted per row), shape (nnz,).
        S: Values of S_h^l(a): patch stiffness, rows and columns of the patch boundary
            replaced by the identity, shape (nnz,).
        F: Right-hand sides F_j = (v -> int_T a grad Lambda_j . grad v), zero on the patch
            boundary, shape (n, 4), columns j = T's corners (0,0), (1,0), (0,1), (1,1).
        hats: Lambda_j, T's four coarse basis functions at the patch vertices, shape (n, 4).
        energy: sum_j ||Lambda_j||_{a,T}^2 = sum_j int_T a grad Lambda_j . grad Lambda_j > 0
            (also where T touches the domain's Dirichlet boundary, where F_j^T Lambda_j is
            not: F vanishes there).
    """

    crow: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    S: npt.NDArray[np.float64]
    F: npt.NDArray[np.float64]
    hats: npt.NDArray[np.float64]
    energy: float


class PatchProblem(PETScResource):
    """The saddle-point problem of one patch configuration, set up once, solved per patch.

    The public interface is :meth:`system` (the matrices of a coefficient) and :meth:`solve`
    (its correctors C); the classical provider, the torch export and the tests use only these.
    Owns PETSc objects (a KSP and matrices): release them with :meth:`destroy` or use the
    problem as a context manager.

    Args:
        config: The patch configuration.
        space: The fine space of the configuration's patch shape.
        r: Fine cells per coarse cell in each direction (one number or one per direction).
        Pi: Local L2 projection of I_H (see :func:`dolfinx_lod.interpolation.local_projection`).
        solver: Options prefix and default PETSc options of the patch solver.
    """

    def __init__(
        self,
        config: Configuration,
        space: PatchSpace,
        r: int | npt.ArrayLike,
        Pi: npt.NDArray[np.float64],
        solver: PatchSolverOptions | None = None,
    ):
        solver = solver or PatchSolverOptions()
        self.prefix = solver.prefix
        #: (space.assemblies, a) of the system last assembled by this problem.
        self._assembled: tuple[int, npt.NDArray[np.float64]] | None = None
        self._energy = 0.0  # sum_j a_T(Lambda_j, Lambda_j) of that system
        self.space = space
        d = len(config.shape)
        element = np.asarray(config.element)
        V = space.V
        # Right-hand sides: int_T a grad Lambda_j . grad v; cells of T tagged 1, others 2.
        in_T = (space.cell_lattice_ij // r == element).all(axis=1)
        tags = dolfinx.mesh.meshtags(
            space.mesh,
            d,
            np.arange(space.num_cells, dtype=np.int32),
            np.where(in_T, 1, 2).astype(np.int32),
        )
        X = space.dof_lattice / r  # dof positions in coarse-cell units
        vertices = np.asarray(config.shape) + 1
        J = box_points(vertices)
        #: Lambda_omega: the coarse hats of all patch vertices J at the fine dofs, shape
        #: (n_dofs, prod(w_k + 1)), columns in local coarse vertex order.
        self.coarse_hats = np.prod([_hat(X[:, k : k + 1], J[:, k]) for k in range(d)], axis=0)
        corners = lattice_keys(element + corner_bits(d), vertices)
        self.num_corners = corners.size
        self.hats = []
        for k in corners:
            hat = dolfinx.fem.Function(V)
            hat.x.array[:] = self.coarse_hats[:, k]
            self.hats.append(hat)
        self.tags = tags
        self._T_cells = np.flatnonzero(in_T)  # T's fine cells (DOLFINx order)
        self._T_hats = self.coarse_hats[:, corners]  # Lambda_j in dof order
        self._mass_load_forms = [
            element_mass_load_form(V, space.c, hat, tags, 1) for hat in self.hats
        ]
        self._c_assembled: npt.NDArray[np.float64] | None = None  # c of G
        self._G = np.zeros((space.dof_vertex.size, self.num_corners), order="F")  # int_T c L_j v

        # Saddle-point matrix [[S, B^T], [B, 0]] in CSR with a fixed pattern.
        B = patch_constraints(config, r, Pi)[:, space.dof_vertex]  # columns in dof order
        self.num_dofs, self.num_constraints = space.dof_vertex.size, B.shape[0]
        self._setup_saddle(B, solver)
        self._setup_solver()

    def _setup_saddle(self, B: npt.NDArray[np.float64], solver: PatchSolverOptions) -> None:
        N, S = self.num_dofs, self.space.S
        S_rows = np.repeat(np.arange(N), np.diff(S.indptr))
        b_rows, b_cols = np.nonzero(B)
        b_vals = B[b_rows, b_cols]
        rows = np.concatenate([S_rows, b_cols, N + b_rows])
        cols = np.concatenate([S.indices, N + b_rows, b_cols])
        vals = np.concatenate([np.zeros(S_rows.size), b_vals, b_vals])
        order = np.lexsort((cols, rows))
        self._S_position = np.argsort(order)[: S_rows.size]  # where S.data goes
        size = N + self.num_constraints
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=size))]).astype(
            PETSc.IntType
        )
        self._indices = cols[order].astype(PETSc.IntType)
        #: K and its factorization (freed while the process holds too many: see
        #: :mod:`dolfinx_lod.patch_solver`).
        self.saddle = SaddleSolver(self._indptr, self._indices, solver)
        self.saddle.values[:] = vals[order]  # B's entries stay; S's are set per solve
        self.K, self.ksp = self.saddle.K, self.saddle.ksp

    def _setup_solver(self) -> None:
        size = self.num_dofs + self.num_constraints
        self.rhs = PETSc.Mat().createDense((size, self.num_corners), comm=MPI.COMM_SELF)
        self.rhs.setUp()
        self.rhs.assemble()
        self.sol = self.rhs.duplicate()

    def system(self, a_patch: npt.NDArray[np.float64]) -> PatchSystem:
        """The patch system (S, F, Lambda) for coefficient values ``a_patch``. Rank-local.

        Args:
            a_patch: a on the patch's fine cells (local cell order).

        Returns:
            S, F and the hats Lambda_j in the patch's local vertex order (copies).
        """
        F_dofs = self._assemble(a_patch)
        space = self.space
        crow, cols, position = space.vertex_csr
        F = np.empty_like(F_dofs)
        F[space.dof_vertex] = F_dofs
        hats = self.vertex_hats
        return PatchSystem(crow, cols, space.S.data[position], F, hats, self._energy)

    @property
    def num_entries(self) -> int:
        """Stored entries (nnz) of the patch stiffness S."""
        return int(self.space.S.data.size)

    @property
    def vertex_pattern(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The sparsity of S in local vertex order: (row offsets, sorted columns)."""
        crow, cols, _ = self.space.vertex_csr
        return crow, cols

    @functools.cached_property
    def vertex_hats(self) -> npt.NDArray[np.float64]:
        """Lambda_j at the patch vertices (local vertex order), shape (n, 2^d)."""
        hats = np.empty((self.num_dofs, len(self.hats)))
        hats[self.space.dof_vertex] = np.stack([hat.x.array for hat in self.hats], axis=1)
        return hats

    def _assemble(self, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Assemble S (into ``space.S``, dof order, Dirichlet rows = identity) and the 2^d
        right-hand sides F_j for coefficient values ``a_patch`` (local cell order).

        Returns F (n_dofs, 2^d) in dof order, zero on the patch boundary. This is the one place
        patch matrices are assembled: :meth:`system` and :meth:`solve` use it.
        """
        space = self.space
        if (
            self._assembled is not None
            and self._assembled[0] == space.assemblies
            and np.array_equal(self._assembled[1], a_patch)
        ):
            return self.rhs.getDenseArray()[: self.num_dofs]
        space.assemble_stiffness(a_patch)
        F = self.rhs.getDenseArray()
        n = self.num_dofs
        # F_j = int_T a grad Lambda_j . grad v = (S restricted to T's cells) Lambda_j.
        F[:n] = space.stiffness_action(a_patch, self._T_hats, self._T_cells)
        F[n:] = 0.0
        # sum_j a_T(Lambda_j, Lambda_j), before the patch boundary rows are zeroed.
        self._energy = float(np.sum(F[:n] * self._T_hats))
        F[space.boundary_dofs] = 0.0
        self._assembled = (space.assemblies, np.array(a_patch, copy=True))
        return F[: self.num_dofs]

    def solve(self, a_patch: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Correctors C_T Lambda_j for coefficient values ``a_patch`` (local cell order).

        Solves the saddle-point system [[S, B^T], [B, 0]] [C; mu] = [F; 0]. Rank-local.

        Returns:
            C, shape (n_vertices, 2^d), in the patch's local vertex order.

        Raises:
            PatchSolveError: The factorization or the solve failed, or C is not finite.
        """
        self._assemble(a_patch)
        # Solve with S / s and rescale (C is invariant to a -> a / s): the saddle-point block
        # and the identity rows of the patch boundary stay balanced for any scale of a. s is a
        # power of two near max(a), so both scalings are exact and s = 1 for max(a) near 1.
        s = scale_of(a_patch)
        self.saddle.values[self._S_position] = np.where(
            self.space.bc_diagonal, 1.0, self.space.S.data / s
        )
        self.rhs.assemble()
        failure = self.saddle.factorize()
        if failure is None:
            try:
                self.ksp.matSolve(self.rhs, self.sol)
                failure = self._failure()
            except PETSc.Error as e:
                failure = self._failure() or f"PETSc error code {e.ierr}"
        C = np.empty((self.num_dofs, self.num_corners))
        if failure is None:
            C[self.space.dof_vertex] = self.sol.getDenseArray()[: self.num_dofs] / s
            if not np.isfinite(C).all():
                failure = "non-finite correctors"
        if failure is not None:
            self.saddle.release()  # the next solve factorizes anew
            raise PatchSolveError(failure)
        return C

    def solve_load(
        self, a_patch: npt.NDArray[np.float64], load: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """The fine-scale corrector q in W(patch) of a load vector: [[S, B^T], [B, 0]]
        [q; mu] = [load; 0] (load in the patch's local vertex order, zeroed on the patch
        boundary), factorized for ``a_patch``. Returns q in local vertex order. Rank-local.

        Raises:
            PatchSolveError: The factorization or the solve failed.
        """
        self.solve(a_patch)
        size = self.num_dofs + self.num_constraints
        b = PETSc.Mat().createDense((size, 1), comm=MPI.COMM_SELF)
        b.setUp()
        rhs = b.getDenseArray()
        rhs[:] = 0.0
        rhs[: self.num_dofs, 0] = load[self.space.dof_vertex]
        rhs[self.space.boundary_dofs, 0] = 0.0
        b.assemble()
        x = b.duplicate()
        self.ksp.matSolve(b, x)  # as the corrector solves (one MUMPS call path)
        failure = self._failure()
        q = np.empty(self.num_dofs)
        q[self.space.dof_vertex] = x.getDenseArray()[: self.num_dofs, 0]
        b.destroy()
        x.destroy()
        if failure is not None or not np.isfinite(q).all():
            raise PatchSolveError(failure or "non-finite boundary corrector")
        return q

    def local_operators(
        self, C: npt.NDArray[np.float64], c_patch: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Petrov–Galerkin local operators (K_T, M_T) of this patch's element T.

        The contributions of T to the coarse stiffness P^T S B and capacity mass P^T Mc B
        (gridlod's pglod K_T), for the correctors ``C`` (vertex order) of the coefficient last
        passed to :meth:`system` / :meth:`solve`:

            K_T[i, j] = int_T a grad Lambda_j . grad Lambda_i - int_w a grad C_j . grad Lambda_i
            M_T[i, j] = int_T c Lambda_j Lambda_i - int_w c C_j Lambda_i,

        i over the patch's coarse vertices (local order), j over T's corners. Summed over all T
        (with i, j mapped to global coarse vertices) they give P^T S B and P^T Mc B exactly.
        ``c_patch``: capacity on the patch cells (local cell order).
        """
        space = self.space
        space.assemble_capacity(c_patch)
        if self._c_assembled is None or not np.array_equal(self._c_assembled, c_patch):
            self._G[:] = 0.0
            for j, L in enumerate(self._mass_load_forms):
                dolfinx.fem.assemble_vector(self._G[:, j], L)
            self._c_assembled = np.array(c_patch, copy=True)
        # F_j is zeroed where the correctors vanish: there T touches the Dirichlet boundary of
        # the domain, where the hats of the rows kept (coarse dofs) vanish.
        F = self.rhs.getDenseArray()[: self.num_dofs]
        C_dofs = C[space.dof_vertex]
        Lt = self.coarse_hats.T
        K = Lt @ (F - space.matmul(space.S_full, C_dofs))
        M = Lt @ (self._G - space.matmul(space.Mc, C_dofs))
        return K, M

    def _failure(self) -> str | None:
        """What went wrong in the last factorization or solve (None if nothing)."""
        return self.saddle.failure()

    @functools.cached_property
    def _indicator_forms(self) -> tuple[dolfinx.fem.Form, dolfinx.fem.Form, dolfinx.fem.Form]:
        """Weighted stiffness on T and on the rest of the patch, a-energy on T (compiled on
        first use: only selective updates with a tolerance need them)."""
        V, space, tags = self.space.V, self.space, self.tags
        return (
            stiffness_form(V, space.weight, tags, 1),
            stiffness_form(V, space.weight, tags, 2),
            stiffness_form(V, space.a, tags, 1),
        )

    def indicator(
        self,
        a_new: npt.NDArray[np.float64],
        a_ref: npt.NDArray[np.float64],
        C_ref: npt.NDArray[np.float64],
    ) -> float:
        """Error indicator e_T of the correctors ``C_ref`` for a new coefficient ``a_new``.

        ``C_ref`` was computed for ``a_ref`` (Hellman & Målqvist, Numerical homogenization of
        elliptic PDEs with similar coefficients, MMS 2019):

            e_T = max_{w in Q1(T)} ||(a - a_ref) a^{-1/2} (chi_T grad w - grad C_ref w)||
                                   / ||a^{1/2} grad w||_{L2(T)},

        the L2 norm over the patch. Zero when the coefficient did not change on the patch.
        """
        space = self.space
        space.set_cells(space.weight, (a_ref - a_new) ** 2 / a_new)
        space.set_cells(space.a, a_new)
        Phi = np.stack([hat.x.array for hat in self.hats], axis=1)  # dof order
        C = C_ref[space.dof_vertex]
        W_T, W_rest, S_T = self._indicator_forms
        N = space.quadratic(W_T, Phi - C) + space.quadratic(W_rest, C)
        D = space.quadratic(S_T, Phi)
        # Q1(T) modulo constants (both forms vanish on constants).
        m = self.num_corners
        Q = np.linalg.qr(np.vstack([np.ones(m), np.eye(m)[: m - 1]]).T)[0][:, 1:]
        L = np.linalg.cholesky(Q.T @ D @ Q)
        Linv = np.linalg.inv(L)
        return float(np.sqrt(max(np.linalg.eigvalsh(Linv @ (Q.T @ N @ Q) @ Linv.T).max(), 0.0)))

    def destroy(self) -> None:
        """Free the PETSc objects (the KSP and the matrices)."""
        for obj in (self.rhs, self.sol):
            obj.destroy()
        self.saddle.destroy()


def scale_of(a: npt.NDArray[np.float64]) -> float:
    """The power of two nearest to max(a) (1 for an empty or non-positive a): dividing a
    system linear in a by it is exact and leaves a of scale 1."""
    top = float(np.max(a, initial=0.0))
    return float(2.0 ** np.round(np.log2(top))) if top > 0.0 and np.isfinite(top) else 1.0


def _hat(x: npt.NDArray[np.float64], centres: npt.NDArray[np.int64]) -> npt.NDArray:
    """1D hats max(0, 1 - |x - z|) at points x (N, 1) for centres z: shape (N, len(z))."""
    return np.maximum(0.0, 1.0 - np.abs(x - centres[None, :]))
