"""Backward Euler steppers: the fine FEM reference and the Galerkin and Petrov–Galerkin LOD.

All share one interface (``step(coefficient, t)``, ``solution()``, ``timings``,
``destroy()``) and read a(t_m) from the :class:`~dolfinx_lod.schedule.StepCoefficient` of the
loop (one DG0 Function and one change flag per step). The LOD steppers share
:class:`_LODStepper` (the fine system Mc, F, the basis, the coarse vectors, U^0 and the
reconstruction u~ = B U); what a step costs, by case:

- basis unchanged: one coarse mat-vec and one coarse solve with the kept factorization;
- :class:`PetrovGalerkinStepper`, changed basis: one COO assembly of the coarse matrices from
  the changed patches' local operators (K_T, M_T); the history term is the previous coarse mass
  times U^{m-1}: no fine-scale data;
- :class:`GalerkinStepper`, changed basis: K = B^T (Mc/tau + S) B, updated from the previous K
  when few patches / fine cells changed (:class:`~dolfinx_lod.coarse_update.GalerkinOperator`),
  and the history term B^T Mc B_{m-1} U^{m-1} through fine mat-vecs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import dolfinx.fem
import numpy as np
from petsc4py import PETSc

from dolfinx_lod.basis import FullUpdate, MultiscaleBasis, SelectiveUpdate, UpdateStrategy
from dolfinx_lod.boundary import BoundaryData, LiftedLoad, action, owned_mask
from dolfinx_lod.coarse_update import GalerkinOperator, shifted
from dolfinx_lod.coefficients import CoefficientLike
from dolfinx_lod.correctors import CorrectorProvider, OperatorSource
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.lod import (
    FineSystem,
    LocalAssembly,
    coarse_boundary_rows,
    coarse_matrix,
    to_function,
    validate_method,
)
from dolfinx_lod.norms import free_stiffness
from dolfinx_lod.parallel import PETScResource, validate
from dolfinx_lod.schedule import Source, StepCoefficient, capacity_function, initial_value
from dolfinx_lod.solvers import (
    coarse_solver,
    fine_solver,
    negative_eigenvalues,
    solve_checked,
    solve_coarse,
)
from dolfinx_lod.updates import DEFAULT_TOL

UPDATES = ("full", "selective")

#: Relative tolerance of the fine FEM stepper's CG + GAMG: near the discretisation error of
#: the tests and benchmarks, as a user's own time loop would set it.
FEM_RTOL = 1e-8


def update_strategy(
    update: str, tol: float = DEFAULT_TOL, indicator: str = "coefficient"
) -> UpdateStrategy:
    """The basis update strategy named ``update`` ("full", or "selective" with ``tol`` and
    ``indicator``, see :class:`~dolfinx_lod.basis.SelectiveUpdate`)."""
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    return FullUpdate() if update == "full" else SelectiveUpdate(tol, indicator)


def _bind(fine: FineSystem, coefficient: StepCoefficient) -> None:
    """Let the fine stiffness read the loop's DG0 a(t_m). Collective."""
    a = coefficient.function()
    if fine.a is not a:
        fine.set_coefficient(a)


class FEMStepper(PETScResource):
    """Fine FEM backward Euler, the reference: (Mc/tau + S(t_m)) u^m = Mc u^{m-1}/tau + F(t_m),
    CG + GAMG to ``rtol`` (options prefix ``lod_fine_``). While a(t_m) is unchanged the matrix
    is not reassembled and the preconditioner is reused; ``setups`` counts the preconditioner
    set-ups (one per change of a).

    Args:
        grids: Nested meshes.
        tau: Time step.
        capacity: c > 0, constant in time, any form of :mod:`dolfinx_lod.inputs`.
        source: f, any form of :mod:`dolfinx_lod.inputs` or a callable (t, x) -> values.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.
        rtol: Relative tolerance of CG (default :data:`FEM_RTOL`).
        time: A Constant the user's UFL data reads as t: set to t_m before f is evaluated.
        dirichlet: g on the Dirichlet sides, constant in time (forms of
            :func:`~dolfinx_lod.inputs.vertex_function`); default 0.
        flux: {side: q} on Neumann sides, constant in time; default none.

    Collective methods. Owns PETSc objects: call :meth:`destroy`.
    """

    name = "fem"

    def __init__(
        self,
        grids: NestedGrids,
        tau: float,
        capacity: CoefficientLike = 1.0,
        source: CoefficientLike = 1.0,
        u0: Callable | None = None,
        rtol: float = FEM_RTOL,
        time: dolfinx.fem.Constant | None = None,
        dirichlet: Any = None,
        flux: dict[str, Any] | None = None,
    ):
        self.grids, self.tau, self.rtol = grids, tau, rtol
        self.source = Source(grids, source, time)
        c = capacity_function(grids, capacity)
        data = BoundaryData.create(grids, dirichlet, flux)
        self.fine = FineSystem(grids, None, self.source.function, c, data.flux_form)
        #: g on the Dirichlet dofs (u^m = g there), S g and S without conditions for current a.
        self._g = data.dirichlet_vector() if data.g is not None else None
        self._g_dofs = owned_mask(grids) if data.g is not None else None  # owned Dirichlet dofs
        self._Sg: PETSc.Vec | None = None
        self._S_free: PETSc.Mat | None = None
        u_init = initial_value(grids, u0)
        self.u = dolfinx.fem.Function(grids.V_h) if u_init is None else u_init
        self.u.name = "u_h"
        self._A: PETSc.Mat | None = None
        self._ksp: PETSc.KSP | None = None
        self._work = self.fine.Mc.createVecLeft()
        self.setups = 0
        self.timings: dict[str, float] = {}

    def step(self, coefficient: StepCoefficient, t: float) -> None:
        """Advance to t_m. Collective."""
        t0 = time.perf_counter()
        if coefficient.changed() or self._ksp is None:
            _bind(self.fine, coefficient)
            self._A = shifted(self._A, self.fine.assemble_stiffness(), self.fine.Mc, self.tau)
            if self._ksp is None:
                self._ksp = fine_solver(self._A, rtol=self.rtol)
            self._ksp.setOperators(self._A)  # the next solve sets the preconditioner up
            self.setups += 1
            if self._g is not None:
                self._boundary_terms()
        if self.source.update(t):
            self.fine.assemble_load()
        self.fine.Mc.mult(self.u.x.petsc_vec, self._work)
        self._work.scale(1.0 / self.tau)
        self._work.axpy(1.0, self.fine.F)
        if self._g is not None:  # u = g on the Dirichlet dofs (identity rows of the matrix)
            self._work.axpy(-1.0, self._Sg)
            self._work.axpy(1.0, self._g)
        t1 = time.perf_counter()
        solve_checked(self._ksp, self._work, self.u.x.petsc_vec)
        if self._g is not None:  # u = g exactly there, not only to the solver's tolerance
            self.u.x.petsc_vec.array[self._g_dofs] = self._g.array[self._g_dofs]
        self.u.x.scatter_forward()
        self.timings = {"fine_assembly": t1 - t0, "fine_solve": time.perf_counter() - t1}

    def _boundary_terms(self) -> None:
        """S g (the lifting's load) and S without conditions (the energy norm) for the
        current a. Collective."""
        for obj in (self._Sg, self._S_free):
            if obj is not None:
                obj.destroy()
        self._Sg = action(self.grids, self.fine.a, self._g, self.fine.bc)
        self._S_free = free_stiffness(self.grids, self.fine.a)

    def solution(self) -> dolfinx.fem.Function:
        """u_h^m."""
        return self.u

    @property
    def energy_matrix(self) -> PETSc.Mat:
        """The stiffness of the energy norm: S, or without boundary conditions where g != 0."""
        return self.fine.S if self._S_free is None else self._S_free

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for obj in (self._A, self._ksp, self._work, self._g, self._Sg, self._S_free):
            if obj is not None:
                obj.destroy()
        self.fine.destroy()


class _LODStepper(PETScResource):
    """What the Galerkin and Petrov–Galerkin LOD steppers share (see :func:`LODStepper` for
    the arguments): the fine system (Mc, F), the basis, U, the coarse right-hand side, U^0 and
    u~ = B U. Subclasses implement ``_coarse_step(coefficient, first, changed, load_changed)``
    (leave ``_b`` and ``_ksp`` ready for the solve) and ``_destroy``."""

    method = ""
    petrov = False

    def __init__(
        self,
        grids: NestedGrids,
        layers: int,
        tau: float,
        update: str = "full",
        tol: float = DEFAULT_TOL,
        capacity: CoefficientLike = 1.0,
        source: CoefficientLike = 1.0,
        u0: Callable | None = None,
        provider: CorrectorProvider | None = None,
        progress: bool = False,
        name: str = "lod",
        indicator: str = "coefficient",
        time: dolfinx.fem.Constant | None = None,
        dirichlet: Any = None,
        flux: dict[str, Any] | None = None,
    ):
        comm = grids.comm
        strategy: list[UpdateStrategy] = []
        validate(comm, lambda: strategy.append(update_strategy(update, tol, indicator)))
        self.grids, self.tau, self.name = grids, tau, name
        self.strategy = strategy[0]
        c_fun = capacity_function(grids, capacity)
        self.basis = MultiscaleBasis(
            grids, layers, provider, progress, capacity=c_fun if self.petrov else None
        )
        self.source = Source(grids, source, time)
        data = BoundaryData.create(grids, dirichlet, flux)
        self.fine = FineSystem(grids, None, self.source.function, c_fun, data.flux_form)
        self._lifted = LiftedLoad(data, self.fine.bc, tau) if data.active else None
        self._u0 = initial_value(grids, u0)
        self._boundary = coarse_boundary_rows(grids)
        self.U: PETSc.Vec | None = None
        self._b: PETSc.Vec | None = None
        self._Fc: PETSc.Vec | None = None  # test^T F
        self._ksp: PETSc.KSP | None = None
        self._reconstructed: dolfinx.fem.Function | None = None
        self.timings: dict[str, float] = {}
        self.touched_fine: dict[str, int] = {}

    def step(self, coefficient: StepCoefficient, t: float) -> None:
        """Advance U to t_m. Collective."""
        fine_before = self.fine.assemblies
        t0 = time.perf_counter()
        first = self.U is None
        a = coefficient.function() if self.basis.needs_field(self.strategy) else coefficient.a
        self.basis.update(a, coefficient.p, strategy=self.strategy, assemble=False)
        changed = self.basis.num_recomputed > 0
        t1 = time.perf_counter()
        load_changed = self.source.update(t)
        if load_changed:
            self.fine.assemble_load()
        if self._lifted is not None:  # boundary data: the load of w = u - L_m, every step
            self._lifted.update(
                self.basis, coefficient.function(), self.fine.F, self.fine.Mc, first or changed
            )
            load_changed = True
        self._coarse_step(coefficient, first, changed, load_changed)
        t2 = time.perf_counter()
        solve_checked(self._ksp, self._b, self.U)
        self._reconstructed = None
        indicators = self.basis.timings.get("indicators", 0.0)
        self.timings = {  # phases, disjoint
            "indicators": indicators,
            "basis_update": t1 - t0 - indicators,
            "coarse_assembly": t2 - t1,
            "coarse_solve": time.perf_counter() - t2,
        }
        self.touched_fine = {
            "fine_assemblies": self.fine.assemblies - fine_before,
            "patches_recomputed": self.basis.num_recomputed,
        }

    def _coarse_step(self, coefficient, first: bool, changed: bool, load_changed: bool) -> None:
        raise NotImplementedError

    @property
    def _load(self) -> PETSc.Vec:
        """F, or with boundary data the load of w = u - L_m (:class:`LiftedLoad`)."""
        return self.fine.F if self._lifted is None else self._lifted.F

    def _coarse_load(self, test: PETSc.Mat) -> PETSc.Vec:
        """test^T F with zeros at the boundary coarse vertices."""
        if self._Fc is None:
            self._Fc = test.createVecRight()
        test.multTranspose(self._load, self._Fc)
        self._Fc.setValues(self._boundary, np.zeros(self._boundary.size))
        self._Fc.assemble()
        return self._Fc

    def _start(self, M: PETSc.Mat, test: PETSc.Mat) -> None:
        """U^0: the Mc-projection of u0 (test^T Mc B_1 U^0 = test^T Mc u0), or 0."""
        self.U = M.createVecRight()
        self._b = M.createVecRight()
        self.U.set(0.0)
        if self._u0 is None and self._lifted is None:
            return
        u0 = self.fine.Mc.createVecLeft()  # u0 - L_1 with boundary data
        if self._u0 is not None:
            self._u0.x.petsc_vec.copy(u0)
        if self._lifted is not None:
            u0.axpy(-1.0, self._lifted.L)
        w = self.fine.Mc.createVecLeft()
        self.fine.Mc.mult(u0, w)
        u0.destroy()
        test.multTranspose(w, self._b)
        self._b.setValues(self._boundary, np.zeros(self._boundary.size))
        self._b.assemble()
        projection = M.copy()
        projection.zeroRowsColumns(self._boundary, diag=1.0)
        U = solve_coarse(projection, self._b)
        U.copy(self.U)
        for obj in (w, projection, U):
            obj.destroy()

    def _set_operator(self, K: PETSc.Mat) -> None:
        if self._ksp is None:
            self._ksp = coarse_solver(K)
        self._ksp.setOperators(K)

    def solution(self, out: dolfinx.fem.Function | None = None) -> dolfinx.fem.Function:
        """u~^m = B_m U^m as a Function on V_h (assembles B if needed). Collective."""
        if self._reconstructed is None:
            t0 = time.perf_counter()
            B = self.basis.matrix()
            u = B.createVecLeft()
            B.mult(self.U, u)
            if self._lifted is not None:
                u.axpy(1.0, self._lifted.L)
            self._reconstructed = to_function(self.grids.V_h, u, "u_ms")
            u.destroy()
            self.timings["reconstruction"] = time.perf_counter() - t0
        if out is not None:
            out.x.array[:] = self._reconstructed.x.array
            return out
        return self._reconstructed

    def _destroy(self) -> None:
        raise NotImplementedError

    def destroy(self, keep_basis: bool = False) -> None:
        """Free the PETSc objects (the basis too, unless ``keep_basis``). Collective."""
        for obj in (self.U, self._b, self._Fc, self._ksp):
            if obj is not None:
                obj.destroy()
        self._destroy()
        self.fine.destroy()
        if self._lifted is not None:
            self._lifted.destroy()
        if not keep_basis:
            self.basis.destroy()


class PetrovGalerkinStepper(_LODStepper):
    """LOD backward Euler tested with P: (M_m/tau + K_m) U^m = M_{m-1} U^{m-1}/tau + P^T F
    from the local operators (K_T, M_T) of the basis (no fine-scale data after step 1).

    Learned operators (an :class:`~dolfinx_lod.correctors.OperatorSource` provider): the first
    assembly counts the negative eigenvalues of the symmetric part of M_1/tau + K_1
    (:attr:`negative_eigenvalues`) and warns if any: a non-coercive system that the fitting
    errors can make nearly singular at some p (docs/performance.md)."""

    method = "petrov-galerkin"
    petrov = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._local = LocalAssembly(self.basis)
        self._K = self._local.create()  # M/tau + K (system)
        self._M = self._local.create()  # M (history term)
        self.negative_eigenvalues: int | None = None  # learned operators: of the first system

    def _coarse_step(self, coefficient, first: bool, changed: bool, load_changed: bool) -> None:
        """b = M_{m-1} U^{m-1}/tau + P^T F, then (M_m/tau + K_m) from the local operators."""
        P = self.basis.P
        if first or load_changed:
            self._coarse_load(P)
        if first:
            self._local.assemble(self._M, 0.0, 1.0, 0.0)
            self._start(self._M, P)
        self._M.mult(self.U, self._b)  # the previous basis' mass P^T Mc B_{m-1}
        self._b.aypx(1.0 / self.tau, self._Fc)
        if first or changed:
            self._local.assemble(self._M, 0.0, 1.0, 0.0)
            self._local.assemble(self._K, 1.0, 1.0 / self.tau, 1.0)
            self._set_operator(self._K)
        if first and isinstance(self.basis.provider, OperatorSource):
            self._check_coercive()

    def _check_coercive(self) -> None:
        """Count the negative eigenvalues of sym(M_1/tau + K_1); warn if any. Collective."""
        count = self.negative_eigenvalues = negative_eigenvalues(self._K)
        if count:
            warnings.warn(
                f"the learned Petrov-Galerkin coarse system M/tau + K has {count} negative "
                "eigenvalue(s) in its symmetric part: it is not coercive, so the local operators' "
                "fitting errors can make it nearly singular at some p and the time loop's error "
                "unbounded; the classical operators are then usually not coercive either "
                "(correctors localized to too few layers l for this contrast): use more layers "
                "or the Galerkin LOD",
                RuntimeWarning,
                stacklevel=4,
            )

    def _destroy(self) -> None:
        for obj in (self._K, self._M):
            obj.destroy()


class GalerkinStepper(_LODStepper):
    """LOD backward Euler tested with B_m: B_m^T (Mc/tau + S_m) B_m U^m = B_m^T (Mc u~^{m-1}/tau
    + F), the coarse matrix kept by a :class:`~dolfinx_lod.coarse_update.GalerkinOperator`."""

    method = "galerkin"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.operator = GalerkinOperator(self.grids, self.fine, self.tau)
        self._M_G: PETSc.Mat | None = None  # B^T Mc B, while B is unchanged
        self._u_prev: PETSc.Vec | None = None  # Mc-side fine vector B_{m-1} U^{m-1}

    def _coarse_step(self, coefficient, first: bool, changed: bool, load_changed: bool) -> None:
        """b = B_m^T (Mc B_{m-1} U^{m-1}/tau + F), K = B_m^T (Mc/tau + S) B_m."""
        if changed and not first:  # B still holds the previous basis: u~^{m-1} = B U
            self.basis.B.mult(self.U, self._u_prev)
        a_changed = coefficient.changed() or first
        if a_changed:
            _bind(self.fine, coefficient)
            self.operator.before_basis(self.basis, coefficient.values())
        B = self.basis.matrix()
        if first:
            self._u_prev = B.createVecLeft()
            M = coarse_matrix(self.grids, self.fine.Mc, B)
            self._start(M, B)
            M.destroy()
            B.mult(self.U, self._u_prev)
        if a_changed:
            self._set_operator(self.operator.after_basis(B, self.basis.pattern_version))
        if first or changed:
            self._history_from_fine(B)
            return
        if self._M_G is None:  # the basis stays: the history term is B^T Mc B U^{m-1}
            self._M_G = coarse_matrix(self.grids, self.fine.Mc, B)
            self._M_G.zeroRowsColumns(self._boundary, diag=0.0)
        if self._Fc is None or load_changed:
            self._coarse_load(B)
        self._M_G.mult(self.U, self._b)
        self._b.aypx(1.0 / self.tau, self._Fc)

    def _history_from_fine(self, B: PETSc.Mat) -> None:
        """b = B^T (Mc u~^{m-1} / tau + F) after a basis change (drops B^T Mc B, B^T F)."""
        for attr in ("_M_G", "_Fc"):
            if getattr(self, attr) is not None:
                getattr(self, attr).destroy()
                setattr(self, attr, None)
        work = self.fine.Mc.createVecLeft()
        self.fine.Mc.mult(self._u_prev, work)
        work.scale(1.0 / self.tau)
        work.axpy(1.0, self._load)
        B.multTranspose(work, self._b)
        self._b.setValues(self._boundary, np.zeros(self._boundary.size))
        self._b.assemble()
        work.destroy()

    def _destroy(self) -> None:
        for obj in (self._M_G, self._u_prev):
            if obj is not None:
                obj.destroy()
        self.operator.destroy()


def LODStepper(
    grids: NestedGrids, layers: int, tau: float, method: str = "galerkin", *args, **kwargs
) -> GalerkinStepper | PetrovGalerkinStepper:
    """The LOD stepper of ``method``: a :class:`GalerkinStepper` or :class:`PetrovGalerkinStepper`.

    Args:
        grids: Nested meshes.
        layers: l >= 1.
        tau: Time step.
        method: "galerkin" (test B) or "petrov-galerkin" (test P, local coarse operators).
        update: "full" or "selective" basis update (with ``tol``).
        tol: Tolerance of the selective update (bound on the relative energy change of the
            correctors that a patch may keep, see :class:`~dolfinx_lod.basis.SelectiveUpdate`;
            default :data:`~dolfinx_lod.updates.DEFAULT_TOL` = 0.1, 0: every changed patch).
        capacity: c > 0, constant in time, any form of :mod:`dolfinx_lod.inputs`.
        source: f, any form of :mod:`dolfinx_lod.inputs` or a callable (t, x) -> values.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.
        provider: Corrector provider (default: classical patch solves).
        progress: Progress bar of the corrector computations (rank 0).
        name: Label of the stepper in records.
        indicator: Error indicator of the selective update ("coefficient" or "correctors").
        time: A Constant the user's UFL data reads as t: set to t_m before f is evaluated.
        dirichlet: g on the Dirichlet sides, constant in time (:mod:`dolfinx_lod.boundary`:
            lifting recomputed with the basis, :class:`~dolfinx_lod.boundary.LiftedLoad`).
        flux: {side: q} on Neumann sides, constant in time.
        *args: The arguments after ``method``, in the order above.
        **kwargs: The same by name.

    Collective. ``timings`` holds the phases of the last step (and ``reconstruction`` once
    ``solution()`` was called in it), ``touched_fine`` the fine-scale work it did.
    """
    validate(grids.comm, lambda: validate_method(method))
    cls = PetrovGalerkinStepper if method == "petrov-galerkin" else GalerkinStepper
    return cls(grids, layers, tau, *args, **kwargs)
