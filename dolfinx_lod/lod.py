"""Coarse LOD systems, the fine FEM reference and error measures.

With trial basis B (fine x coarse) and test basis B (Galerkin) or P (Petrov–Galerkin) the
coarse stiffness is K~ = test^T S trial; the LOD solution is reconstructed on the fine grid as
u_ms = B U. Coarse vertices on a Dirichlet side carry u = 0 (identity rows, zero right-hand
side); on a Neumann side they are unknowns like interior ones (the natural condition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
import ufl
from petsc4py import PETSc

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.boundary import BoundaryData
from dolfinx_lod.coefficients import CoefficientLike, coefficient_function
from dolfinx_lod.correctors import CorrectorProvider
from dolfinx_lod.forms import load_form, mass_form, stiffness_form
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.inputs import source_function, validate_source  # noqa: F401  (public here too)
from dolfinx_lod.norms import free_stiffness, relative_errors
from dolfinx_lod.parallel import PETScResource, validate
from dolfinx_lod.solvers import fine_solver, solve_checked, solve_coarse

METHODS = ("galerkin", "petrov-galerkin")


def validate_method(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class FineSystem(PETScResource):
    """Fine-scale operators on V_h, each assembled on first use. Forms are compiled once;
    :meth:`assemble_stiffness` and :meth:`assemble_load` reassemble after the Functions ``a``
    or ``f`` changed. Collective.

    - S: stiffness int a grad u . grad v, Dirichlet rows/columns = identity;
    - M: L2 mass int u v (no boundary condition; error norms);
    - Mc: capacity-weighted mass int c u v, Dirichlet rows/columns zero (time stepping);
    - F: load int f v (+ ``flux``, the Neumann term int q v ds), zero on the Dirichlet sides.

    The Dirichlet sides are those of ``grids`` (:attr:`NestedGrids.neumann` names the others).

    ``assemblies`` counts the fine assemblies done (S and F), so that callers can show that a
    path touched no fine-scale operator.
    """

    def __init__(
        self,
        grids: NestedGrids,
        a: dolfinx.fem.Function | None,
        f: float | dolfinx.fem.Function = 1.0,
        c: float | dolfinx.fem.Function = 1.0,
        flux: ufl.Form | None = None,
    ):
        self.grids, self.a, self.c, self._flux = grids, a, c, flux
        mesh = grids.fine_mesh
        self.bc = dolfinx.fem.dirichletbc(0.0, grids.dirichlet_dofs(grids.V_h), grids.V_h)
        source = f if isinstance(f, dolfinx.fem.Function) else dolfinx.fem.Constant(mesh, float(f))
        self._source = source
        self._objects: dict[str, PETSc.Mat | PETSc.Vec] = {}
        self.assemblies = 0

    @property
    def S(self) -> PETSc.Mat:
        """Fine stiffness for the current ``a`` (assembled on first use)."""
        if "S" not in self._objects:
            self._S_form = stiffness_form(self.grids.V_h, self.a)
            self._objects["S"] = dolfinx.fem.petsc.create_matrix(self._S_form)
            self._assemble_S()
        return self._objects["S"]

    @property
    def M(self) -> PETSc.Mat:
        """Fine L2 mass matrix."""
        if "M" not in self._objects:
            self._objects["M"] = dolfinx.fem.petsc.assemble_matrix(mass_form(self.grids.V_h))
            self._objects["M"].assemble()
        return self._objects["M"]

    @property
    def Mc(self) -> PETSc.Mat:
        """Fine capacity mass matrix, zero Dirichlet rows/columns."""
        if "Mc" not in self._objects:
            form = mass_form(self.grids.V_h, self.c)
            Mc = dolfinx.fem.petsc.assemble_matrix(form, bcs=[self.bc], diag=0.0)
            Mc.assemble()
            self._objects["Mc"] = Mc
        return self._objects["Mc"]

    @property
    def F(self) -> PETSc.Vec:
        """Fine load vector for the current source."""
        if "F" not in self._objects:
            self._F_form = load_form(self.grids.V_h, self._source, self._flux)
            self._objects["F"] = dolfinx.fem.petsc.create_vector(self.grids.V_h)
            self._assemble_F()
        return self._objects["F"]

    def _assemble_F(self) -> None:
        F = self._objects["F"]
        with F.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(F, self._F_form)
        F.ghostUpdate(PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(F, [self.bc])
        self.assemblies += 1

    def _assemble_S(self) -> None:
        S = self._objects["S"]
        S.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(S, self._S_form, bcs=[self.bc])
        S.assemble()
        self.assemblies += 1

    def assemble_load(self) -> PETSc.Vec:
        """Reassemble F in place for the current source."""
        if "F" in self._objects:
            self._assemble_F()
        return self.F

    def set_coefficient(self, a: dolfinx.fem.Function) -> None:
        """Read the stiffness from the DG0 Function ``a`` from now on (S is reassembled by the
        next :meth:`assemble_stiffness`)."""
        self.a = a
        if "S" in self._objects:
            self._S_form = stiffness_form(self.grids.V_h, a)

    def assemble_stiffness(self) -> PETSc.Mat:
        """Reassemble S in place for the current values of ``a``."""
        if "S" in self._objects:
            self._assemble_S()
        return self.S

    def solve(self, A: PETSc.Mat, b: PETSc.Vec) -> PETSc.Vec:
        """Solve A x = b on V_h (A symmetric positive definite) with :func:`fine_solver`."""
        ksp = fine_solver(A)
        x = A.createVecRight()
        solve_checked(ksp, b, x)
        ksp.destroy()
        return x

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for obj in self._objects.values():
            obj.destroy()
        self._objects.clear()


def coarse_boundary_rows(grids: NestedGrids) -> npt.NDArray[np.int32]:
    """Global V_H dof numbers of the owned coarse vertices on a Dirichlet side."""
    start = grids.V_H.dofmap.index_map.local_range[0]
    mask = grids.coarse_dirichlet_mask()[grids.coarse_dof_keys]
    return (start + np.flatnonzero(mask)).astype(PETSc.IntType)


class CoarseProduct(PETScResource):
    """K = test^T A trial (test = trial if None) with identity rows/columns at the boundary
    coarse vertices, computed as test^T (A trial) (measured twice as fast as PETSc's PtAP
    here). The first call computes the symbolic products; later calls reuse them (the
    sparsity of B and of the fine matrices never changes), so only the numeric products are
    redone. ``K`` is owned by this object. Collective."""

    def __init__(self, grids: NestedGrids):
        self.grids = grids
        self._boundary = coarse_boundary_rows(grids)
        self._AB: PETSc.Mat | None = None
        self.K: PETSc.Mat | None = None
        self._version = 0

    def __call__(
        self, A: PETSc.Mat, trial: PETSc.Mat, test: PETSc.Mat | None = None, version: int = 0
    ) -> PETSc.Mat:
        """K for the current values; ``version`` (e.g. ``MultiscaleBasis.pattern_version``)
        changes when a matrix's internal structure was rebuilt: the symbolic phase is redone."""
        test = trial if test is None else test
        if version != self._version:
            self.destroy()
            self._version = version
        self._AB = A.matMult(trial, result=self._AB)
        self.K = test.transposeMatMult(self._AB, result=self.K)
        self.K.zeroRowsColumns(self._boundary, diag=1.0)
        return self.K

    def destroy(self) -> None:
        """Free the product matrices (K included)."""
        for obj in (self._AB, self.K):
            if obj is not None:
                obj.destroy()
        self._AB = self.K = None


def coarse_matrix(
    grids: NestedGrids, A: PETSc.Mat, trial: PETSc.Mat, test: PETSc.Mat | None = None
) -> PETSc.Mat:
    """K = test^T A trial once (see :class:`CoarseProduct`); the caller owns K. Collective."""
    product = CoarseProduct(grids)
    K = product(A, trial, test)
    product.K = None
    product.destroy()
    return K


class LocalAssembly:
    """Petrov–Galerkin coarse matrices sum_T (w_K K_T + w_M M_T) from the local operators
    of a basis built with a capacity (:attr:`MultiscaleBasis.operators`), scattered to the
    global coarse dofs with a COO plan built once: an update costs one ``setValuesCOO`` of
    O(N_H^d (2l + 2)^d) values and touches no fine-scale data. Boundary coarse vertices get
    ``diagonal`` on the diagonal and nothing else. Collective.
    """

    def __init__(self, basis: MultiscaleBasis):
        g, NH = basis.grids, basis.grids.coarse_sizes
        self.basis = basis
        interior = ~g.coarse_dirichlet_mask()
        rows, cols, keeps = [], [], []
        for patch in basis.patches:
            vk, ck = patch.coarse_vertex_keys(NH), patch.element_vertex_keys(NH)
            keep = interior[vk][:, None] & interior[ck][None, :]
            rows.append(np.broadcast_to(g.coarse_dof_global[vk][:, None], keep.shape)[keep])
            cols.append(np.broadcast_to(g.coarse_dof_global[ck][None, :], keep.shape)[keep])
            keeps.append(keep.ravel())
        self._flat_keep = np.concatenate([*keeps, np.zeros(0, dtype=bool)])  # the kept entries
        self._boundary = coarse_boundary_rows(g)
        self._rows = np.concatenate([*rows, self._boundary]).astype(PETSc.IntType)
        self._cols = np.concatenate([*cols, self._boundary]).astype(PETSc.IntType)

    def create(self) -> PETSc.Mat:
        """A new coarse matrix with the COO pattern (values set by :meth:`assemble`)."""
        imap = self.basis.grids.V_H.dofmap.index_map
        size = (imap.size_local, imap.size_global)
        A = PETSc.Mat().create(comm=self.basis.grids.comm)
        A.setSizes((size, size))
        A.setType(PETSc.Mat.Type.AIJ)
        A.setPreallocationCOO(self._rows.copy(), self._cols.copy())  # PETSc may reorder them
        return A

    def assemble(
        self, A: PETSc.Mat, weight_K: float, weight_M: float, diagonal: float
    ) -> PETSc.Mat:
        """Set A = sum_T (weight_K K_T + weight_M M_T), ``diagonal`` at boundary vertices."""
        values = np.zeros(int(self._flat_keep.sum()))
        for k, weight in enumerate((weight_K, weight_M)):  # one vector operation per block
            if weight:
                flat = [op[k].ravel() for op in self.basis.operators]
                values += weight * np.concatenate([*flat, np.zeros(0)])[self._flat_keep]
        values = np.concatenate([values, np.full(self._boundary.size, diagonal)])
        A.setValuesCOO(values, addv=PETSc.InsertMode.INSERT_VALUES)
        return A


def coarse_rhs(grids: NestedGrids, test: PETSc.Mat, F: PETSc.Vec) -> PETSc.Vec:
    """test^T F with zeros at the boundary coarse vertices. Collective."""
    b = test.createVecRight()
    test.multTranspose(F, b)
    b.setValues(coarse_boundary_rows(grids), np.zeros(coarse_boundary_rows(grids).size))
    b.assemble()
    return b


def galerkin_solution(
    grids: NestedGrids,
    fine: FineSystem,
    trial: PETSc.Mat,
    test: PETSc.Mat | None = None,
    F: PETSc.Vec | None = None,
) -> tuple[PETSc.Vec, PETSc.Vec, PETSc.Mat]:
    """Coarse solution U of test^T S trial U = test^T F and its reconstruction trial U
    (F = ``fine.F`` unless given).

    Returns (U, trial U, K). Collective."""
    K = coarse_matrix(grids, fine.S, trial, test)
    b = coarse_rhs(grids, trial if test is None else test, fine.F if F is None else F)
    U = solve_coarse(K, b)
    u = trial.createVecLeft()
    trial.mult(U, u)
    b.destroy()
    return U, u, K


@dataclass
class EllipticSolution(PETScResource):
    """Result of :func:`solve_elliptic`: coarse coefficients U, fine reconstruction u_ms = B U,
    the coefficient a as a DG0 Function on T_h, coarse matrix K~ and wall times per phase.
    With a reference: the fine FEM solution u_h and relative errors against it, ``l2``,
    ``energy`` of u_ms and ``coarse_fem_l2``, ``coarse_fem_energy`` of the plain Q1 FEM on T_H
    (without: u_h is None, errors empty).

    Owns PETSc objects (K, the basis): release them with :meth:`destroy`."""

    U: dolfinx.fem.Function
    u_ms: dolfinx.fem.Function
    u_h: dolfinx.fem.Function | None
    K: PETSc.Mat
    basis: MultiscaleBasis
    errors: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    a: dolfinx.fem.Function | None = None

    def destroy(self) -> None:
        """Free K and the basis. Collective."""
        self.K.destroy()
        self.basis.destroy()


def to_function(
    V: dolfinx.fem.FunctionSpace,
    x: PETSc.Vec,
    name: str = "",
    out: dolfinx.fem.Function | None = None,
) -> dolfinx.fem.Function:
    """Copy the owned entries of a PETSc vector into a (new or given) Function on V and update
    its ghosts. Collective."""
    u = dolfinx.fem.Function(V, name=name) if out is None else out
    u.x.array[: x.getLocalSize()] = x.getArray(readonly=True)
    u.x.scatter_forward()
    return u


def solve_elliptic(
    grids: NestedGrids,
    a: CoefficientLike,
    layers: int,
    f: CoefficientLike = 1.0,
    method: str = "galerkin",
    p: Any = None,
    progress: bool = False,
    reference: bool = False,
    provider: CorrectorProvider | None = None,
    dirichlet: Any = None,
    flux: dict[str, Any] | None = None,
) -> EllipticSolution:
    """LOD solution of -div(a grad u) = f with u = g on the Dirichlet sides of ``grids`` (g = 0
    unless ``dirichlet`` is given) and a grad u . n = q on its Neumann sides (q = 0 unless
    ``flux`` names the side) (:func:`~dolfinx_lod.grids.create_nested_grids`).

    Galerkin: K~ = B^T S B (fine stiffness and products); Petrov–Galerkin: K~ = P^T S B from
    the patches' local operators (:class:`LocalAssembly`), no fine-scale matrix at all.
    Boundary data: :mod:`dolfinx_lod.boundary` (g's coarse part carried by the basis).

    Args:
        grids: Nested meshes.
        a: Coefficient, any form of :mod:`dolfinx_lod.inputs`: a number, ``fem.Constant``,
            UFL expression on T_h, Function, array of shape ``grids.cell_array_shape``
            ((n_y, n_x) = A[iy, ix] or (n_z, n_y, n_x)) or callable x -> values (x of shape
            (3, N), fine-cell midpoints); a family a(x, p) with ``p``.
        layers: l >= 1 (patch layers).
        f: Source, the same forms as ``a`` (DG0 on T_h).
        method: "galerkin" (K~ = B^T S B) or "petrov-galerkin" (K~ = P^T S B).
        p: Parameter of a family a(x, p) (and of a provider conditioned on p).
        progress: Progress bar for the correctors (rank 0).
        reference: Also solve the fine FEM and the plain coarse Q1 FEM and report the errors
            of both against the fine solution (the fine solve is skipped otherwise).
        provider: Corrector provider (default: classical patch solves), e.g.
            :class:`~dolfinx_lod.neural.provider.LearnedCorrectors`.
        dirichlet: g on the Dirichlet sides: a number, Constant, UFL expression, Function,
            array of fine-vertex values (``grids.vertex_array_shape``) or callable x -> values.
        flux: {side: q} for Neumann sides of ``grids``, q in the same forms as ``dirichlet``.

    Collective; all input is validated on every rank before any solve.
    """
    validate(grids.comm, lambda: validate_method(method))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    f = source_function(grids, f)
    a_fun = coefficient_function(grids, a, p)
    a_fun.name = "a"
    data = BoundaryData.create(grids, dirichlet, flux)
    petrov = method == "petrov-galerkin"
    basis = MultiscaleBasis(
        grids, layers, provider, progress=progress, capacity=1.0 if petrov else None
    )
    fine = FineSystem(grids, a_fun, f, flux=data.flux_form)
    timings["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    basis.update(a_fun, p)
    timings["basis"] = time.perf_counter() - t
    timings.update({f"basis_{k}": v for k, v in basis.timings.items()})
    K, U, u_ms = _coarse_solution(basis, fine, data, petrov, timings)
    result = EllipticSolution(
        U=to_function(grids.V_H, U, "U"),
        u_ms=to_function(grids.V_h, u_ms, "u_ms"),
        u_h=None,
        K=K,
        basis=basis,
        timings=timings,
        a=a_fun,
    )
    if reference:
        _reference(result, fine, data, u_ms)
    for obj in (U, u_ms):
        obj.destroy()
    fine.destroy()
    return result


def _coarse_solution(
    basis: MultiscaleBasis, fine: FineSystem, data: BoundaryData, petrov: bool, timings: dict
) -> tuple[PETSc.Mat, PETSc.Vec, PETSc.Vec]:
    """K~, U and u_ms = B U + L (L the lifting of the boundary data, if any); the phases'
    wall times into ``timings``. Collective."""
    B, a, t = basis.matrix(), fine.a, time.perf_counter()
    if petrov:
        assembly = LocalAssembly(basis)
        K = assembly.assemble(assembly.create(), 1.0, 0.0, 1.0)
    else:
        K = coarse_matrix(basis.grids, fine.S, B)
    lifting = data.lifting(basis.P, basis, a, fine.bc) if data.active else None
    F = data.lifted_load(fine.F, a, fine.bc, lifting)
    b = coarse_rhs(basis.grids, basis.P if petrov else B, F)
    timings["coarse_assembly"] = time.perf_counter() - t
    t = time.perf_counter()
    U = solve_coarse(K, b)
    u_ms = B.createVecLeft()
    B.mult(U, u_ms)
    if lifting is not None:
        u_ms.axpy(1.0, lifting)
        lifting.destroy()
    for obj in (b, F):
        obj.destroy()
    timings["coarse_solve"] = time.perf_counter() - t
    return K, U, u_ms


def _reference(
    result: EllipticSolution, fine: FineSystem, data: BoundaryData, u_ms: PETSc.Vec
) -> None:
    """The fine FEM u_h = g_D + (solution for F - S g_D), the plain coarse Q1 FEM (lifting
    P G + r_h) and their errors (unconstrained energy norm where g != 0). Collective."""
    grids, P, t = fine.grids, result.basis.P, time.perf_counter()
    gD = data.dirichlet_vector()
    F = data.lifted_load(fine.F, fine.a, fine.bc, gD)
    u_h = fine.solve(fine.S, F)
    u_h.axpy(1.0, gD)
    result.timings["fine_solve"] = time.perf_counter() - t
    S = fine.S if data.g is None else free_stiffness(grids, fine.a)
    result.errors = relative_errors(u_ms, u_h, fine.M, S)
    lift = data.lifting(P)
    F_fem = data.lifted_load(fine.F, fine.a, fine.bc, lift)
    U_fem, u_fem, K_fem = galerkin_solution(grids, fine, P, F=F_fem)
    u_fem.axpy(1.0, lift)
    fem = relative_errors(u_fem, u_h, fine.M, S)
    result.errors.update({f"coarse_fem_{k}": v for k, v in fem.items()})
    result.u_h = to_function(grids.V_h, u_h, "u_h")
    for obj in (U_fem, u_fem, K_fem, u_h, gD, F, lift, F_fem):
        obj.destroy()
    if S is not fine.S:
        S.destroy()
