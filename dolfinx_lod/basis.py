"""The multiscale basis B = P - sum_T C_T^l (paper (8)), whatever produces the correctors.

:class:`MultiscaleBasis` is the one place that turns a coefficient into the distributed
PETSc matrix B (fine x coarse, columns = corrected basis functions Lambda~_j). Each rank
computes the correctors of the patches it owns (:func:`dolfinx_lod.patches.owned_cells`),
fetching only the coefficient values on those patches, with a
:class:`~dolfinx_lod.correctors.CorrectorProvider` (classical patch solves by default, or a
learned provider), and keeps them so that a later update may recompute only some patches.

Columns of coarse vertices on a Dirichlet side of the domain are the uncorrected hat functions;
the coarse Dirichlet condition eliminates them (see :mod:`dolfinx_lod.lod`). Coarse vertices on
a Neumann side are coarse dofs like interior ones.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.balance import spread
from dolfinx_lod.coefficients import CoefficientLike, owned_coefficient_values
from dolfinx_lod.correctors import ClassicalCorrectors, CorrectorProvider, OperatorSource
from dolfinx_lod.grids import NestedGrids, lattice_coordinates
from dolfinx_lod.indicators import CoefficientIndicator
from dolfinx_lod.interpolation import local_projection
from dolfinx_lod.parallel import NumericalError, PETScResource, collective, fetch, refresh, validate
from dolfinx_lod.patch_problem import PATCH_OPTIONS_PREFIX, PatchProblem
from dolfinx_lod.patches import make_patch, owned_cells, validate_layers, validate_refinement
from dolfinx_lod.updates import (  # noqa: F401  (public names of this module)
    INDICATORS,
    FullUpdate,
    PatchValues,
    SelectiveUpdate,
    UpdateStrategy,
)


def corrector_row_counts(grids: NestedGrids, layers: int) -> npt.NDArray[np.int32]:
    """Number of coarse columns of B that can be non-zero in each owned fine row."""
    counts = []
    index = lattice_coordinates(grids.fine_dof_keys, grids.fine_sizes + 1, grids.dim).T
    for j, r, NH in zip(index, grids.refinement, grids.coarse_sizes, strict=True):
        c_lo = np.maximum(-(-j // r) - 1, 0)  # coarse cells containing the vertex
        c_hi = np.minimum(j // r, NH - 1)
        T_lo = np.maximum(c_lo - layers, 0)  # coarse cells whose patch contains it
        T_hi = np.minimum(c_hi + layers, NH - 1)
        counts.append(T_hi - T_lo + 2)
    return np.prod(counts, axis=0).astype(np.int32)


def _concatenate(arrays: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)


def _split_like(values: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Split ``values`` into consecutive pieces as long as the arrays in ``parts``."""
    return np.split(values, np.cumsum([p.size for p in parts])[:-1]) if parts else []


class MultiscaleBasis(PETScResource):
    """Corrected basis B = P - sum_T C_T^l of V_H^ms for a coefficient a. Collective methods.

    Args:
        grids: Nested meshes.
        layers: l >= 1, coarse layers of each patch N^l(T).
        provider: Producer of element correctors; default classical patch solves.
        progress: Show a progress bar (rank 0) while correctors are computed.
        capacity: With a capacity c (number, array, callable or DG0 Function), every update
            also computes the Petrov–Galerkin local operators (K_T, M_T) of each patch
            (:meth:`~dolfinx_lod.patch_problem.PatchProblem.local_operators`, or the provider's
            own ``local_operators(patches, p)``, e.g.
            :class:`~dolfinx_lod.neural.operators.OperatorProvider`), kept in ``operators`` for
            :class:`~dolfinx_lod.lod.LocalAssembly`. B is assembled only when asked for
            (:meth:`matrix`); with provider operators, its correctors are computed only then.
        petsc_options_prefix: Options prefix of the classical patch solvers.

    Owns PETSc objects (B, P, the patch solvers): release them with :meth:`destroy` or use
    the basis as a context manager (``with MultiscaleBasis(grids, 1) as basis: ...``).
    """

    def __init__(
        self,
        grids: NestedGrids,
        layers: int,
        provider: CorrectorProvider | None = None,
        progress: bool = False,
        capacity: CoefficientLike | float | None = None,
        petsc_options_prefix: str = PATCH_OPTIONS_PREFIX,
    ):
        validate(
            grids.comm,
            lambda: (
                validate_layers(layers),
                validate_refinement(grids.coarse_cells, grids.fine_cells),
            ),
        )
        self.grids, self.layers, self.progress = grids, layers, progress
        self.Pi = local_projection(grids)
        #: Classical patch problems: the default provider, and the error indicators (shared
        #: by all bases on ``grids``: see :meth:`ClassicalCorrectors.shared`).
        self.patch_problems = ClassicalCorrectors.shared(grids, self.Pi, petsc_options_prefix)
        self._released = False
        self.provider = provider if provider is not None else self.patch_problems
        NH, free = grids.coarse_sizes, ~grids.dirichlet_sides
        self.patches = [make_patch(int(T), NH, layers, grids.dim, free) for T in owned_cells(grids)]
        self._num_patches = int(np.prod(NH))
        # Global fine rows and coarse columns of every owned patch, looked up once.
        vkeys = [p.fine_vertex_keys(grids) for p in self.patches]
        unique, inverse = np.unique(_concatenate(vkeys), return_inverse=True)
        dofs = grids.fine_dof_global(unique)[inverse].astype(PETSc.IntType)
        self._rows = _split_like(dofs, vkeys)
        corners = [p.element_vertex_keys(NH) for p in self.patches]
        self._cols = [grids.coarse_dof_global[c].astype(PETSc.IntType) for c in corners]
        on_boundary = grids.coarse_dirichlet_mask()
        self._interior = [~on_boundary[c] for c in corners]
        ckeys = [p.fine_cell_keys(grids) for p in self.patches]
        self.cell_keys, cell_inverse = np.unique(_concatenate(ckeys), return_inverse=True)
        self.cell_index = _split_like(cell_inverse, ckeys)
        self.correctors: list[npt.NDArray[np.float64] | None] = [None] * len(self.patches)
        #: Petrov–Galerkin local operators (K_T, M_T) per owned patch (with a capacity).
        self.operators: list[tuple[npt.NDArray, npt.NDArray] | None] = [None] * len(self.patches)
        self.with_operators = capacity is not None
        #: The provider gives the local operators itself (learned, from p alone): then B's
        #: correctors are computed only when :meth:`matrix` asks for them.
        self._learned_operators = self.with_operators and isinstance(self.provider, OperatorSource)
        self._owed: tuple[npt.NDArray[np.int64], Any] | None = None
        self._c_patches: list[npt.NDArray[np.float64]] = []
        if self.with_operators:
            self._c_patches = self.patch_coefficients(capacity, name="capacity")
        self._stale = False  # B does not yet hold the current correctors
        #: Coefficient on each patch when its correctors were computed (a_ref; None when the
        #: provider does not read it), and whether the patch was computed at all.
        self.reference: list[npt.NDArray[np.float64] | None] = [None] * len(self.patches)
        self.reference_set = [False] * len(self.patches)
        #: a on the owned fine cells at the last update that read it (a cheap "unchanged" test).
        self._owned_reference: npt.NDArray[np.float64] | None = None
        self._local_reference: npt.NDArray[np.float64] | None = None  # a_local then
        self._new_weights: list | None = None  # mu_T' computed with the last correctors
        #: Error indicators e_T of the last selective update (0 where a did not change).
        self.indicators = np.zeros(len(self.patches))
        self._indicator: CoefficientIndicator | None = None
        #: Correctors of B's last assembly that updates replaced since (owned patch -> C).
        self._replaced: dict[int, npt.NDArray[np.float64]] = {}
        self.num_recomputed = 0
        #: Parameter p of the last update of a provider that does not read the coefficient.
        self._p_reference: npt.NDArray | None = None
        self.P = grids.prolongation()
        self.B = self._create_matrix()
        #: Assemblies of B so far; from the second on B uses a COO plan (see _assemble).
        self.num_assemblies = 0
        #: Changes whenever B's internal sparsity structure is rebuilt (products computed with
        #: B must then redo their symbolic phase).
        self.pattern_version = 0
        self._coo_P_values = np.empty(0)  # P's local values, set with the COO plan
        self.timings: dict[str, float] = {}

    def _create_matrix(self) -> PETSc.Mat:
        g = self.grids
        (nl, N), (ml, Mg) = self.P.getSizes()
        nnz = corrector_row_counts(g, self.layers)
        B = PETSc.Mat().create(comm=g.comm)
        B.setSizes(((nl, N), (ml, Mg)))
        B.setType(PETSc.Mat.Type.AIJ)
        B.setPreallocationNNZ((np.minimum(nnz, ml), np.minimum(nnz, Mg - ml)))
        B.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        B.setUp()
        return B

    def local_coefficient(
        self, a: CoefficientLike, p: Any = None, name: str = "coefficient a"
    ) -> npt.NDArray[np.float64]:
        """Coefficient values on the fine cells of all owned patches (validated). Collective."""
        g = self.grids
        if isinstance(a, int | float):  # the same number on every rank
            if not (np.isfinite(a) and a > 0):
                raise ValueError(f"{name} must be > 0, got {a}")
            return np.full(self.cell_keys.size, float(a))
        values = owned_coefficient_values(g, a, p, name=name)
        return fetch(g.comm, g.num_fine_cells, g.fine_cell_keys, values, self.cell_keys)

    def patch_coefficients(
        self, a: CoefficientLike, p: Any = None, name: str = "coefficient a"
    ) -> list[npt.NDArray[np.float64]]:
        """Coefficient values on the fine cells of each owned patch (local patch cell order),
        in the order of ``patches``. Collective."""
        a_local = self.local_coefficient(a, p, name)
        return [a_local[index] for index in self.cell_index]

    def patch_problem(self, i: int) -> PatchProblem:
        """The classical patch problem of the owned patch ``patches[i]``. Rank-local."""
        return self.patch_problems.problem(self.patches[i].configuration)

    def update(
        self,
        a: CoefficientLike,
        p: Any = None,
        strategy: UpdateStrategy | None = None,
        assemble: bool = True,
    ) -> PETSc.Mat | None:
        """Bring the correctors (and local operators) up to date with coefficient ``a``.
        Collective.

        Args:
            a: Coefficient (array, callable a(x, p) or DG0 Function on T_h).
            p: Parameter passed to a callable coefficient.
            strategy: Which patches to recompute (:class:`FullUpdate`, the default, or
                :class:`SelectiveUpdate`); patches never computed are always computed.
            assemble: Assemble B now and return it; with False, B is assembled by a later
                :meth:`matrix` (until then it holds the previous basis) and None is returned.

        Returns:
            B (the same matrix object after every update) or None. ``num_recomputed``
            (global) and ``timings`` describe the update.
        """
        t0 = time.perf_counter()
        strategy = strategy or FullUpdate()
        if self.needs_field(strategy):
            g = self.grids
            owned = owned_coefficient_values(g, a, p)
            same = (
                self._owned_reference is not None
                and all(self.reference_set)
                and np.array_equal(owned, self._owned_reference)
            )
            if g.comm.allreduce(same, op=MPI.LAND):  # a unchanged: nothing to fetch or do
                a_patches = [None] * len(self.patches)
                t1 = time.perf_counter()
                todo = np.zeros(len(self.patches), dtype=bool)
                self.indicators = np.zeros(len(self.patches))
            else:
                a_local = self._local_values(owned)
                a_patches = PatchValues(a_local, self.cell_index)
                t1 = time.perf_counter()
                todo = strategy.select(self, a_patches)
        else:  # correctors depend on p alone: the coefficient is never fetched
            a_patches = [None] * len(self.patches)
            t1 = time.perf_counter()
            same = self._p_reference is not None and np.array_equal(self._p_reference, p)
            todo = np.full(len(self.patches), not same, dtype=bool)
            self._p_reference = None if p is None else np.array(p, dtype=np.float64)
        todo |= ~np.array(self.reference_set, dtype=bool)
        t2 = time.perf_counter()
        index = np.flatnonzero(todo)
        self._remember(index)
        # Fails on all ranks (balance.spread raises only after its communication: none waits).
        with collective(self.grids.comm, NumericalError):
            self._compute(index, a_patches, p)
        for i in index:
            self.reference[i] = a_patches[i]
            self.reference_set[i] = True
        if self._indicator is not None and index.size and self.reference[index[0]] is not None:
            weights, self._new_weights = self._new_weights, None
            self._indicator.recomputed(index, self.reference, self.correctors, weights)
        if self.needs_field(strategy):
            self._owned_reference = owned
        t3 = time.perf_counter()
        self.num_recomputed = int(self.grids.comm.allreduce(int(todo.sum())))
        self._stale = self._stale or self.num_recomputed > 0
        B = self.matrix() if assemble else None
        t4 = time.perf_counter()
        self.timings = {
            "fetch": t1 - t0,
            "indicators": t2 - t1,
            "correctors": t3 - t2,
            "assemble_basis": t4 - t3,
        }
        return B

    def needs_field(self, strategy: UpdateStrategy | None = None) -> bool:
        """Whether an update reads the coefficient field (False: p alone decides)."""
        p_only = not self.provider.needs_coefficient and (
            not self.with_operators or self._learned_operators
        )
        return not p_only or not isinstance(strategy or FullUpdate(), FullUpdate)

    def _compute(self, index, a_patches, p: Any) -> None:
        """Correctors and (with a capacity) local operators of the owned patches ``index``."""
        patches = [self.patches[i] for i in index]
        a_todo = [a_patches[i] for i in index]
        show = self.progress and self.grids.comm.rank == 0
        if self._learned_operators:  # operators now, the correctors when B is asked for
            for i, ops in zip(index, self.provider.local_operators(patches, p), strict=True):
                self.operators[i] = ops
            if self._owed is not None:
                index = np.union1d(index, self._owed[0])
            self._owed = (index, p)
            return
        c_todo = [self._c_patches[i] if self.with_operators else None for i in index]
        if self.provider is self.patch_problems:  # the solves spread evenly over the ranks
            ind = self._indicator
            items = list(zip(patches, a_todo, c_todo, strict=True))
            out = spread(self.grids.comm, items, lambda b: self.provider.solve_items(b, ind, show))
            new, new_ops, weights = ([x[k] for x in out] for k in range(3))
            self._new_weights = weights if ind is not None else None
        else:
            new = self.provider.correctors(patches, a_todo, p, progress=show)
            if self.with_operators:
                new_ops = self.patch_problems.operators_for(patches, a_todo, c_todo, new)
        for k, i in enumerate(index):
            self.correctors[i] = new[k]
            if self.with_operators:
                self.operators[i] = new_ops[k]

    def _local_values(self, owned: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """a on the cells of all owned patches: fetched, or after the first time refreshed
        with the changed values only (:func:`~dolfinx_lod.parallel.refresh`). Collective."""
        g = self.grids
        args = (g.comm, g.num_fine_cells, g.fine_cell_keys, owned)
        if self._local_reference is None or self._owned_reference is None:
            a_local = fetch(*args, self.cell_keys)
        else:
            before = (self._owned_reference, self.cell_keys, self._local_reference)
            a_local = refresh(*args, *before)
        self._local_reference = a_local
        return a_local

    def matrix(self) -> PETSc.Mat:
        """B for the correctors of the last update, assembled if it is not yet. Collective."""
        if self._owed is not None:  # learned operators: the correctors of the last p now
            index, p = self._owed
            self._owed = None
            patches = [self.patches[i] for i in index]
            self._remember(index)
            with collective(self.grids.comm, NumericalError):
                new = self.provider.correctors(patches, [None] * len(index), p)
            for i, C in zip(index, new, strict=True):
                self.correctors[i] = C
        if self._stale:
            self._assemble()
            self._stale = False
        return self.B

    def coefficient_indicator(self) -> CoefficientIndicator:
        """The coefficient-only indicators e_T of the owned patches (created on first use from
        the stored correctors and their coefficients). Rank-local."""
        if self._indicator is None:
            self._indicator = CoefficientIndicator(self)
            done = np.flatnonzero(self.reference_set)
            if done.size and self.reference[done[0]] is not None:
                self._indicator.recomputed(done, self.reference, self.correctors)
        return self._indicator

    @property
    def fine_rows(self) -> list[npt.NDArray[np.int32]]:
        """Global V_h dof numbers of each owned patch's fine vertices (local patch order)."""
        return self._rows

    def boundary_lifting(self, G: PETSc.Vec) -> PETSc.Vec:
        """(P - sum_T C_T) G for coarse values G at the boundary coarse vertices: the
        multiscale functions of those vertices (which B leaves out, as U = 0 there) applied to
        G, from the correctors of the last update (B itself is left as it is: a time loop
        still reads the previous basis from it). Returns a new fine vector. Collective."""
        if self._owed is not None:  # learned operators: their correctors are computed now
            self.matrix()
        g = self.grids
        start = self.P.getOwnershipRangeColumn()[0]
        owned = np.arange(start, start + G.getLocalSize())
        G_all = np.zeros(g.coarse_dof_global.size)
        for dofs, values in g.comm.allgather((owned, G.getArray(readonly=True).copy())):
            G_all[dofs] = values
        L = self.P.createVecLeft()
        self.P.mult(G, L)
        for rows, cols, interior, C in zip(
            self._rows, self._cols, self._interior, self.correctors, strict=True
        ):
            if not interior.all():
                L.setValues(rows, -C[:, ~interior] @ G_all[cols[~interior]], PETSc.InsertMode.ADD)
        L.assemble()
        return L

    def changed(self, a_patches: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.bool_]:
        """Rank-local mask of owned patches whose coefficient differs from a_ref."""
        pairs = zip(self.reference, a_patches, strict=True)
        return np.array([ref is None or not np.array_equal(ref, a) for ref, a in pairs], dtype=bool)

    def invalidate(self) -> None:
        """Forget what the stored correctors were computed for: the next update recomputes
        every patch."""
        self.reference = [None] * len(self.patches)
        self.reference_set = [False] * len(self.patches)
        self._p_reference = None
        self._owned_reference = self._local_reference = None

    def _remember(self, index: npt.NDArray[np.int64]) -> None:
        """Keep the correctors B holds for the patches ``index`` about to be recomputed."""
        for i in index:
            if self.correctors[i] is not None:
                self._replaced.setdefault(int(i), self.correctors[i])

    def _assemble(self) -> None:
        """B = P - sum_T C_T from the stored correctors. Collective.

        The first assembly inserts the patch blocks into B's preallocated pattern. A basis that
        is assembled again (a time loop: every step) switches at its second assembly to a COO
        plan built once, the entries of P and of every patch block (PETSc sums repeated entries
        and keeps the communication pattern of off-process rows), so that every later assembly
        is one ``setValuesCOO`` of the concatenated values; from the third on, when at most a
        quarter of the patches changed, only their blocks are added (B += C_old - C_new).
        """
        B, replaced = self.B, self._replaced
        self._replaced = {}
        few = self.grids.comm.allreduce(len(replaced)) <= self._num_patches // 4
        if self.num_assemblies >= 2 and few:
            for i, C_old in replaced.items():
                interior = self._interior[i]
                dC = np.ascontiguousarray((C_old - self.correctors[i])[:, interior])
                B.setValues(self._rows[i], self._cols[i][interior], dC, PETSc.InsertMode.ADD_VALUES)
            B.assemble()
            self.num_assemblies += 1
            return
        if self.num_assemblies == 1:
            self._setup_coo()
            self.pattern_version += 1
        if self.num_assemblies >= 1:
            values = [self._coo_P_values]
            for interior, C in zip(self._interior, self.correctors, strict=True):
                values.append(-C[:, interior].ravel())
            B.setValuesCOO(np.concatenate(values), addv=PETSc.InsertMode.INSERT_VALUES)
        else:
            B.zeroEntries()
            add = PETSc.InsertMode.ADD_VALUES
            for rows, cols, interior, C in zip(
                self._rows, self._cols, self._interior, self.correctors, strict=True
            ):
                # Boundary-vertex columns get explicit zeros so that P's pattern is a subset.
                B.setValues(rows, cols, np.where(interior[None, :], -C, 0.0), addv=add)
            B.assemble()
            B.axpy(1.0, self.P, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        self.num_assemblies += 1

    def difference(self) -> PETSc.Mat:
        """dB = B_new - B_old of the last update, -(C_T^new - C_T^old) on the blocks of the
        patches it recomputed (fine x coarse, the caller owns it). Collective."""
        rows, cols, values = [], [], []
        for i, C_old in self._replaced.items():
            r, c, interior = self._rows[i], self._cols[i], self._interior[i]
            rows.append(np.repeat(r, interior.sum()))
            cols.append(np.tile(c[interior], r.size))
            values.append((C_old - self.correctors[i])[:, interior].ravel())
        D = PETSc.Mat().create(comm=self.grids.comm)
        D.setSizes(self.B.getSizes())
        D.setType(PETSc.Mat.Type.AIJ)
        D.setPreallocationCOO(
            _concatenate(rows).astype(PETSc.IntType), _concatenate(cols).astype(PETSc.IntType)
        )
        D.setValuesCOO(
            np.concatenate(values) if values else np.empty(0),
            addv=PETSc.InsertMode.INSERT_VALUES,
        )
        return D

    def _setup_coo(self) -> None:
        """Give B the COO pattern [entries of P; (row, interior column) of every owned patch
        block], in the order :meth:`_assemble` concatenates the values."""
        ai, aj, self._coo_P_values = self.P.getValuesCSR()
        start, end = self.P.getOwnershipRange()
        rows = [np.repeat(np.arange(start, end, dtype=PETSc.IntType), np.diff(ai))]
        cols = [aj.astype(PETSc.IntType)]
        for r, c, interior in zip(self._rows, self._cols, self._interior, strict=True):
            rows.append(np.repeat(r, interior.sum()))
            cols.append(np.tile(c[interior], r.size))
        self.B.setPreallocationCOO(np.concatenate(rows), np.concatenate(cols))

    def destroy(self) -> None:
        """Free PETSc objects owned by the basis (and its use of the shared classical provider:
        the last basis on the grids frees the patch solvers)."""
        self.B.destroy()
        self.P.destroy()
        if not self._released:  # a second destroy() must not release the shared provider again
            self._released = True
            self.patch_problems.destroy()


def basis_errors(
    grids: NestedGrids, B_hat: PETSc.Mat, B_ref: PETSc.Mat, S: PETSc.Mat
) -> npt.NDArray[np.float64]:
    """Mean over the coarse dofs j (vertices not on a Dirichlet side) of the relative errors
    of the basis functions (columns) of ``B_hat`` against ``B_ref``: [energy ||.||_S, Euclidean
    nodal]. Collective."""
    D = B_hat.copy()
    D.axpy(-1.0, B_ref, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    interior = ~grids.coarse_dirichlet_mask()[grids.coarse_dof_keys]
    out = []
    for A in (S, None):
        ratios = []
        for X in (D, B_ref):
            AX = X if A is None else A.matMult(X)
            G = X.transposeMatMult(AX)
            ratios.append(G.getDiagonal().getArray()[interior].copy())
            for obj in (G, AX) if A is not None else (G,):
                obj.destroy()
        local = np.sqrt(ratios[0] / ratios[1]).sum()
        out.append(grids.comm.allreduce(local) / grids.comm.allreduce(int(interior.sum())))
    D.destroy()
    return np.array(out)
