"""Coarse LOD systems, the fine FEM reference and error measures.

With trial basis B (fine x coarse) and test basis B (Galerkin) or P (Petrov–Galerkin) the
coarse stiffness is K~ = test^T S trial; the LOD solution is reconstructed on the fine grid as
u_ms = B U. Coarse vertices on a Dirichlet side carry u = 0 (identity rows, zero right-hand
side); on a Neumann side they are unknowns like interior ones (the natural condition).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from petsc4py import PETSc

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import CoefficientLike, coefficient_function
from dolfinx_lod.correctors import CorrectorProvider
from dolfinx_lod.forms import load_form, mass_form, stiffness_form
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.parallel import PETScResource, validate

METHODS = ("galerkin", "petrov-galerkin")


def validate_method(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def validate_source(f: float) -> None:
    """Raise ``ValueError`` unless the constant source f is a finite real number."""
    if isinstance(f, bool | np.bool_) or not isinstance(f, numbers.Real):
        kind = f"an array of shape {np.shape(f)}" if hasattr(f, "shape") else type(f).__name__
        raise ValueError(
            "source f must be a number, a callable f(x) of the fine-cell midpoints or a "
            f"DOLFINx Function on the fine mesh; got {kind}"
        )
    if not np.isfinite(f):
        raise ValueError(f"source f must be a finite number, got {f!r}")


def source_function(
    grids: NestedGrids, f: float | Callable[[npt.NDArray], npt.NDArray] | dolfinx.fem.Function
) -> float | dolfinx.fem.Function:
    """The source f as :class:`FineSystem` takes it: a finite number, a DOLFINx Function on
    the fine mesh (used as it is), or a callable f(x) of the fine-cell midpoints x (shape
    (3, N), as DOLFINx interpolation passes them), evaluated into a DG0 Function.
    Collective: a bad value raises ``InputError`` on every rank."""
    if isinstance(f, dolfinx.fem.Function):
        return f
    if callable(f):
        return coefficient_function(grids, lambda x, p: f(x), name="source f", positive=False)
    validate(grids.comm, lambda: validate_source(f))
    return float(f)


class FineSystem(PETScResource):
    """Fine-scale operators on V_h, each assembled on first use. Forms are compiled once;
    :meth:`assemble_stiffness` and :meth:`assemble_load` reassemble after the Functions ``a``
    or ``f`` changed. Collective.

    - S: stiffness int a grad u . grad v, Dirichlet rows/columns = identity;
    - M: L2 mass int u v (no boundary condition; error norms);
    - Mc: capacity-weighted mass int c u v, Dirichlet rows/columns zero (time stepping);
    - F: load int f v, zero on the Dirichlet sides.

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
    ):
        self.grids, self.a, self.c = grids, a, c
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
            self._F_form = load_form(self.grids.V_h, self._source)
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
        rows, cols, self._keep = [], [], []
        for patch in basis.patches:
            vk, ck = patch.coarse_vertex_keys(NH), patch.element_vertex_keys(NH)
            keep = interior[vk][:, None] & interior[ck][None, :]
            rows.append(np.broadcast_to(g.coarse_dof_global[vk][:, None], keep.shape)[keep])
            cols.append(np.broadcast_to(g.coarse_dof_global[ck][None, :], keep.shape)[keep])
            self._keep.append(keep)
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
        values = [
            (weight_K * K + weight_M * M)[keep]
            for (K, M), keep in zip(self.basis.operators, self._keep, strict=True)
        ]
        values.append(np.full(self._boundary.size, diagonal))
        A.setValuesCOO(np.concatenate(values), addv=PETSc.InsertMode.INSERT_VALUES)
        return A


def coarse_rhs(grids: NestedGrids, test: PETSc.Mat, F: PETSc.Vec) -> PETSc.Vec:
    """test^T F with zeros at the boundary coarse vertices. Collective."""
    b = test.createVecRight()
    test.multTranspose(F, b)
    b.setValues(coarse_boundary_rows(grids), np.zeros(coarse_boundary_rows(grids).size))
    b.assemble()
    return b


def fine_solver(
    A: PETSc.Mat, rtol: float = 1e-12, petsc_options_prefix: str = "lod_fine_"
) -> PETSc.KSP:
    """CG + GAMG for an SPD fine matrix; options from the database with
    ``petsc_options_prefix`` override these defaults. The caller owns the KSP. Collective."""
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOptionsPrefix(petsc_options_prefix)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=10000)
    ksp.setFromOptions()
    return ksp


def coarse_solver(K: PETSc.Mat, petsc_options_prefix: str = "lod_coarse_") -> PETSc.KSP:
    """Direct solver (MUMPS LU) for the small coarse matrix; options from the database with
    ``petsc_options_prefix`` override these defaults. The caller owns the KSP. Collective."""
    ksp = PETSc.KSP().create(K.getComm())
    ksp.setOptionsPrefix(petsc_options_prefix)
    ksp.setOperators(K)
    ksp.setType("preonly")
    ksp.getPC().setType("lu")
    ksp.getPC().setFactorSolverType("mumps")
    ksp.setFromOptions()
    return ksp


def solve_checked(ksp: PETSc.KSP, b: PETSc.Vec, x: PETSc.Vec) -> None:
    """ksp.solve(b, x), raising RuntimeError (on all ranks) if it did not converge."""
    ksp.solve(b, x)
    if ksp.getConvergedReason() <= 0:
        raise RuntimeError(
            f"{ksp.getOptionsPrefix()} solver did not converge (reason {ksp.getConvergedReason()})"
        )


def solve_coarse(K: PETSc.Mat, b: PETSc.Vec) -> PETSc.Vec:
    """Solve the coarse system K U = b with :func:`coarse_solver`. Collective."""
    ksp = coarse_solver(K)
    U = K.createVecRight()
    solve_checked(ksp, b, U)
    ksp.destroy()
    return U


def relative_errors(u: PETSc.Vec, u_ref: PETSc.Vec, M: PETSc.Mat, S: PETSc.Mat) -> dict[str, float]:
    """Relative L2 (via M) and energy (via S) errors of u against u_ref. Collective.

    With a zero reference (e.g. a zero source) the relative error is defined as the absolute
    error ||u - u_ref|| (0 when both vanish), so it is always a finite number."""
    e = u - u_ref
    out = {}
    for name, A in (("l2", M), ("energy", S)):
        error, ref = _norm2(A, e), _norm2(A, u_ref)
        out[name] = float(np.sqrt(max(error, 0.0) / ref if ref > 0 else max(error, 0.0)))
    e.destroy()
    return out


def _norm2(A: PETSc.Mat, x: PETSc.Vec) -> float:
    """x^T A x. Collective."""
    y = A.createVecLeft()
    A.mult(x, y)
    value = y.dot(x)
    y.destroy()
    return value


def galerkin_solution(
    grids: NestedGrids,
    fine: FineSystem,
    trial: PETSc.Mat,
    test: PETSc.Mat | None = None,
) -> tuple[PETSc.Vec, PETSc.Vec, PETSc.Mat]:
    """Coarse solution U of test^T S trial U = test^T F and its reconstruction trial U.

    Returns (U, trial U, K). Collective."""
    K = coarse_matrix(grids, fine.S, trial, test)
    b = coarse_rhs(grids, trial if test is None else test, fine.F)
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
    f: float | Callable[[npt.NDArray], npt.NDArray] | dolfinx.fem.Function = 1.0,
    method: str = "galerkin",
    p: Any = None,
    progress: bool = False,
    reference: bool = False,
    provider: CorrectorProvider | None = None,
) -> EllipticSolution:
    """LOD solution of -div(a grad u) = f with u = 0 on the Dirichlet sides of ``grids`` and
    a grad u . n = 0 on its Neumann sides (:func:`~dolfinx_lod.grids.create_nested_grids`).

    Galerkin: K~ = B^T S B (fine stiffness and products); Petrov–Galerkin: K~ = P^T S B from
    the patches' local operators (:class:`LocalAssembly`), no fine-scale matrix at all.

    Args:
        grids: Nested meshes.
        a: Coefficient: array of shape ``grids.cell_array_shape`` ((n_y, n_x) = A[iy, ix] or
            (n_z, n_y, n_x)), callable a(x, p) of the fine-cell midpoints x (shape (3, N)) or
            DG0 Function on T_h.
        layers: l >= 1 (patch layers).
        f: Source: a number, a callable f(x) of the fine-cell midpoints x (shape (3, N)) or
            a DOLFINx Function on T_h.
        method: "galerkin" (K~ = B^T S B) or "petrov-galerkin" (K~ = P^T S B).
        p: Parameter of a callable coefficient (and of a provider conditioned on p).
        progress: Progress bar for the correctors (rank 0).
        reference: Also solve the fine FEM and the plain coarse Q1 FEM and report the errors
            of both against the fine solution (the fine solve is skipped otherwise).
        provider: Corrector provider (default: classical patch solves), e.g.
            :class:`~dolfinx_lod.neural.provider.LearnedCorrectors`.

    Collective; all input is validated on every rank before any solve.
    """
    validate(grids.comm, lambda: validate_method(method))
    timings: dict[str, float] = {}
    t = time.perf_counter()
    f = source_function(grids, f)
    a_fun = coefficient_function(grids, a, p)
    a_fun.name = "a"
    petrov = method == "petrov-galerkin"
    basis = MultiscaleBasis(
        grids, layers, provider, progress=progress, capacity=1.0 if petrov else None
    )
    fine = FineSystem(grids, a_fun, f)
    timings["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    B = basis.update(a_fun, p)
    timings["basis"] = time.perf_counter() - t
    timings.update({f"basis_{k}": v for k, v in basis.timings.items()})
    t = time.perf_counter()
    if petrov:
        assembly = LocalAssembly(basis)
        K = assembly.assemble(assembly.create(), 1.0, 0.0, 1.0)
    else:
        K = coarse_matrix(grids, fine.S, B)
    b = coarse_rhs(grids, basis.P if petrov else B, fine.F)
    timings["coarse_assembly"] = time.perf_counter() - t
    t = time.perf_counter()
    U = solve_coarse(K, b)
    u_ms = B.createVecLeft()
    B.mult(U, u_ms)
    timings["coarse_solve"] = time.perf_counter() - t
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
        t = time.perf_counter()
        u_h = fine.solve(fine.S, fine.F)
        timings["fine_solve"] = time.perf_counter() - t
        result.errors = relative_errors(u_ms, u_h, fine.M, fine.S)
        # Plain Q1 FEM on T_H (trial = test = P) for comparison.
        U_fem, u_fem, K_fem = galerkin_solution(grids, fine, basis.P)
        fem = relative_errors(u_fem, u_h, fine.M, fine.S)
        result.errors.update({f"coarse_fem_{k}": v for k, v in fem.items()})
        result.u_h = to_function(grids.V_h, u_h, "u_h")
        for obj in (U_fem, u_fem, K_fem, u_h):
            obj.destroy()
    for obj in (U, u_ms, b):
        obj.destroy()
    fine.destroy()
    return result
