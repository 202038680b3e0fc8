"""Backward Euler for c d_t u - div(a(t, x) grad u) = f(t, x), u = 0 on the Dirichlet sides
(a grad u . n = 0 on the Neumann sides of the grids).

With tau = T / M and t_m = m tau, the fine FEM (paper (10b)) solves

    (Mc / tau + S(t_m)) u_h^m = Mc u_h^{m-1} / tau + F(t_m),

and the LOD (10a), with the multiscale basis B_m = B(a(t_m)) of the current coefficient,

    (B_m^T Mc B_m / tau + B_m^T S(t_m) B_m) U^m = B_m^T (Mc u~^{m-1} / tau + F(t_m)),

where u~^{m-1} = B_{m-1} U^{m-1} is the previous LOD solution as the fine function it is, not
its coefficients reinterpreted in the new basis. Petrov–Galerkin tests with P instead of B_m.
Initial value: u_h^0 = nodal interpolant of u0 in V_h; u~^0 = its Mc-projection onto the
multiscale space of the first step, B_1 U^0 with (T^T Mc B_1) U^0 = T^T Mc u_h^0, T the test
basis (B_1 or P).

Steppers share one interface (``step(coefficient, t)``, ``solution()``, ``timings``,
``destroy()``): :class:`LODStepper` advances the coarse coefficients U and reconstructs the
fine function u~ = B U only when asked; :class:`FEMStepper` is the fine reference. What an LOD
step costs, by case (``timings`` names the phases):

- basis unchanged (coefficient constant in time, or p unchanged): one coarse mat-vec and one
  coarse solve with the factorization kept from the previous step;
- Petrov–Galerkin with a changed basis: the changed patches' local operators (K_T, M_T) and
  one COO assembly of the coarse matrices; the history term P^T Mc B_{m-1} U^{m-1} is the
  previous coarse mass times U^{m-1}: no fine-scale data;
- Galerkin with a changed basis: B_m, the fine stiffness and the products B^T (Mc/tau + S) B
  (symbolic product reused), and the history term through fine mat-vecs.

:func:`run_parabolic` drives an LOD stepper and, with ``reference=True``, the fine FEM stepper
side by side (:func:`advance`), the comparison (errors per step) being an observer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.basis import FullUpdate, MultiscaleBasis, SelectiveUpdate, UpdateStrategy
from dolfinx_lod.coefficients import (
    CoefficientLike,
    check_coefficient_values,
    coefficient_function,
    owned_coefficient_values,
    set_cell_values,
    validate_array_shape,
)
from dolfinx_lod.correctors import CorrectorProvider
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.lod import (
    CoarseProduct,
    FineSystem,
    LocalAssembly,
    coarse_boundary_rows,
    coarse_matrix,
    coarse_solver,
    fine_solver,
    relative_errors,
    solve_checked,
    solve_coarse,
    to_function,
    validate_method,
)
from dolfinx_lod.parallel import PETScResource, check_interrupt, validate
from dolfinx_lod.progress import progress as progress_report

UPDATES = ("full", "selective")


@dataclass
class CoefficientSchedule:
    """a(t_m, x) for the steps m = 1..M: ``at(m, t)`` returns (coefficient, parameter p).

    Build one with :meth:`from_stack` (one fine-cell array per step), :meth:`from_family`
    (a family a(x, p) and a schedule p(t)) or :meth:`from_function` (a DOLFINx Function
    updated in place for each t).
    """

    at: Callable[[int, float], tuple[CoefficientLike, Any]]
    steps: int | None = None  # number of steps the schedule is defined for (None: any)

    @classmethod
    def from_stack(cls, stack: npt.ArrayLike, check: bool = True) -> CoefficientSchedule:
        """Coefficient on step m = stack[m - 1], an (M, n_y, n_x) or (M, n_z, n_y, n_x) array
        (orientation as for arrays of :mod:`dolfinx_lod.coefficients`). With ``check``, every
        step is validated now, one step at a time (a memory-mapped stack is read once), so
        that a bad value at a later step stops a run before its first step; pass False for a
        stack validated already."""
        stack = np.asarray(stack) if not isinstance(stack, np.ndarray) else stack
        if stack.ndim not in (3, 4):
            raise ValueError(
                f"coefficient stack must have shape (M, n_y, n_x) or (M, n_z, n_y, n_x); got "
                f"{stack.shape}"
            )
        validate_array_shape(stack[0], "coefficient stack entry", stack.ndim - 1)
        for m in range(stack.shape[0] if check else 0):
            check_coefficient_values(np.asarray(stack[m]), f"coefficient at step {m + 1}")
        return cls(lambda m, t: (stack[m - 1], None), steps=stack.shape[0])

    @classmethod
    def from_family(cls, a: Callable, schedule: Callable[[float], Any]) -> CoefficientSchedule:
        """Coefficient a(x, p(t_m)) on step m."""
        return cls(lambda m, t: (a, schedule(t)))

    @classmethod
    def from_function(
        cls, a: dolfinx.fem.Function, update: Callable[[dolfinx.fem.Function, float], None]
    ) -> CoefficientSchedule:
        """A DG0 Function a on T_h that ``update(a, t_m)`` sets in place for step m (e.g.
        ``a.interpolate(...)``; call ``a.x.scatter_forward()`` after writing values by hand).
        The time loop calls it before each step and reads the values right after."""

        def at(m: int, t: float) -> tuple[dolfinx.fem.Function, None]:
            update(a, t)
            return a, None

        return cls(at)


def update_strategy(update: str, tol: float = 0.0) -> UpdateStrategy:
    """The basis update strategy named ``update`` ("full" or "selective" with ``tol``)."""
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    return FullUpdate() if update == "full" else SelectiveUpdate(tol)


class StepCoefficient:
    """a(t_m, x) of the current step, evaluated only when a stepper asks for the field (a
    stepper whose correctors depend on p alone never does).

    Attributes: ``m``, ``t``, ``a`` (the schedule's coefficient of this step: array, callable
    or Function) and ``p`` (its parameter, or None)."""

    def __init__(self, grids: NestedGrids, schedule: CoefficientSchedule):
        self.grids, self.schedule = grids, schedule
        self._function = dolfinx.fem.Function(grids.Q_h, name="a")
        self._evaluated_at: int | None = None
        self.m, self.t = 0, 0.0
        self.a: CoefficientLike | None = None
        self.p: Any = None

    def advance(self, m: int, t: float) -> None:
        """Move to step m at time t."""
        self.m, self.t = m, t
        self.a, self.p = self.schedule.at(m, t)

    def values(self) -> npt.NDArray[np.float64]:
        """Validated values on the owned fine cells. Collective."""
        if self._evaluated_at != self.m:
            values = owned_coefficient_values(
                self.grids, self.a, self.p, name=f"coefficient at step {self.m}"
            )
            set_cell_values(self._function, values)
            self._evaluated_at = self.m
        owned = self.grids.fine_cell_keys.size
        return self._function.x.array[self._function.function_space.dofmap.list[:owned, 0]]

    def function(self) -> dolfinx.fem.Function:
        """a(t_m) as a DG0 Function on T_h. Collective."""
        self.values()
        return self._function


class _Source:
    """f(t, x) as a DG0 Function on T_h (constant or callable f(t, x) at cell midpoints)."""

    def __init__(self, grids: NestedGrids, f: float | Callable):
        self.grids, self.f = grids, f
        self._values: npt.NDArray[np.float64] | None = None
        if callable(f):
            self.function: float | dolfinx.fem.Function = dolfinx.fem.Function(grids.Q_h, name="f")
        else:
            self.function = float(f)

    def update(self, t: float) -> bool:
        """Set f(t); True (on every rank) if its values changed. Collective."""
        if not callable(self.f):
            return False
        values = owned_coefficient_values(
            self.grids, lambda x, p: self.f(p, x), t, name="source", positive=False
        )
        changed = self._values is None or not np.array_equal(values, self._values)
        if self.grids.comm.allreduce(changed, op=MPI.LOR):
            set_cell_values(self.function, values)
            self._values = values
            return True
        return False


def _initial_value(grids: NestedGrids, u0: Callable | None) -> dolfinx.fem.Function | None:
    """The nodal interpolant of u0 in V_h (None for u0 = 0)."""
    if u0 is None:
        return None
    u = dolfinx.fem.Function(grids.V_h)
    u.interpolate(u0)
    return u


def _copy_into(target: PETSc.Mat | None, S: PETSc.Mat, Mc: PETSc.Mat, tau: float) -> PETSc.Mat:
    """target = S + Mc / tau (created from S on first use). Collective."""
    if target is None:
        target = S.copy()
    else:
        target.zeroEntries()
        target.axpy(1.0, S, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
    target.axpy(1.0 / tau, Mc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
    return target


class _FieldTracker:
    """Whether the coefficient field changed since the last time a stepper used it."""

    def __init__(self, grids: NestedGrids):
        self.grids = grids
        self._previous: npt.NDArray[np.float64] | None = None

    def changed(self, coefficient: StepCoefficient) -> bool:
        """True on every rank if a(t_m) differs from the last accepted field. Collective."""
        values = coefficient.values()
        changed = self._previous is None or not np.array_equal(values, self._previous)
        if self.grids.comm.allreduce(changed, op=MPI.LOR):
            self._previous = values.copy()
            return True
        return False


class FEMStepper(PETScResource):
    """Fine FEM backward Euler, the reference: (Mc/tau + S(t_m)) u^m = Mc u^{m-1}/tau + F(t_m),
    CG + GAMG (options prefix ``lod_fine_``), the matrix reassembled only when a changed.

    Args:
        grids: Nested meshes.
        tau: Time step.
        capacity: c > 0, a number or a DG0 Function on T_h.
        source: f, a number or a callable f(t, x) at fine-cell midpoints.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.

    Collective methods. Owns PETSc objects: call :meth:`destroy`.
    """

    name = "fem"

    def __init__(
        self,
        grids: NestedGrids,
        tau: float,
        capacity: float | dolfinx.fem.Function = 1.0,
        source: float | Callable = 1.0,
        u0: Callable | None = None,
    ):
        self.grids, self.tau = grids, tau
        self.source = _Source(grids, source)
        self._a = dolfinx.fem.Function(grids.Q_h, name="a")
        self._field = _FieldTracker(grids)
        self.fine = FineSystem(grids, self._a, self.source.function, capacity)
        u_init = _initial_value(grids, u0)
        self.u = dolfinx.fem.Function(grids.V_h) if u_init is None else u_init
        self.u.name = "u_h"
        self._A: PETSc.Mat | None = None
        self._ksp: PETSc.KSP | None = None
        self._work = self.fine.Mc.createVecLeft()
        self.timings: dict[str, float] = {}

    def step(self, coefficient: StepCoefficient, t: float) -> None:
        """Advance to t_m. Collective."""
        t0 = time.perf_counter()
        if self._field.changed(coefficient):
            self._a.x.array[:] = coefficient.function().x.array
            self._A = _copy_into(self._A, self.fine.assemble_stiffness(), self.fine.Mc, self.tau)
            if self._ksp is None:
                self._ksp = fine_solver(self._A)
            self._ksp.setOperators(self._A)
        if self.source.update(t):
            self.fine.assemble_load()
        self.fine.Mc.mult(self.u.x.petsc_vec, self._work)
        self._work.scale(1.0 / self.tau)
        self._work.axpy(1.0, self.fine.F)
        t1 = time.perf_counter()
        solve_checked(self._ksp, self._work, self.u.x.petsc_vec)
        self.u.x.scatter_forward()
        self.timings = {"fine_assembly": t1 - t0, "fine_solve": time.perf_counter() - t1}

    def solution(self) -> dolfinx.fem.Function:
        """u_h^m."""
        return self.u

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for obj in (self._A, self._ksp, self._work):
            if obj is not None:
                obj.destroy()
        self.fine.destroy()


class LODStepper(PETScResource):
    """LOD backward Euler on the coarse coefficients U (paper (10a)); u~ = B U on request.

    Args:
        grids: Nested meshes.
        layers: l >= 1.
        tau: Time step.
        method: "galerkin" (test B) or "petrov-galerkin" (test P, local coarse operators).
        update: "full" or "selective" basis update (with ``tol``).
        tol: Tolerance of the selective update.
        capacity: c > 0 (number, array, callable c(x, p) or DG0 Function), constant in time.
        source: f: a number, or a callable f(t, x) at fine-cell midpoints.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.
        provider: Corrector provider (default: classical patch solves).
        progress: Progress bar of the corrector computations (rank 0).
        name: Label of the stepper in records.

    Collective methods. ``timings`` holds the phases of the last step (and ``reconstruction``
    once :meth:`solution` was called in it), ``touched_fine`` the fine-scale work it did (fine
    assemblies, patches recomputed). Owns PETSc objects: call :meth:`destroy`.
    """

    def __init__(
        self,
        grids: NestedGrids,
        layers: int,
        tau: float,
        method: str = "galerkin",
        update: str = "full",
        tol: float = 0.0,
        capacity: CoefficientLike | float = 1.0,
        source: float | Callable = 1.0,
        u0: Callable | None = None,
        provider: CorrectorProvider | None = None,
        progress: bool = False,
        name: str = "lod",
    ):
        comm = grids.comm
        validate(comm, lambda: validate_method(method))
        strategy: list[UpdateStrategy] = []
        validate(comm, lambda: strategy.append(update_strategy(update, tol)))
        self.grids, self.tau, self.method, self.name = grids, tau, method, name
        self.strategy = strategy[0]
        self.petrov = method == "petrov-galerkin"
        if isinstance(capacity, int | float):
            validate(comm, lambda: _check_positive_number(capacity, "capacity c"))
            c_fun: float | dolfinx.fem.Function = float(capacity)
        else:
            c_fun = coefficient_function(grids, capacity, name="capacity c")
        self.basis = MultiscaleBasis(
            grids, layers, provider, progress, capacity=c_fun if self.petrov else None
        )
        self.source = _Source(grids, source)
        self._a = dolfinx.fem.Function(grids.Q_h, name="a")
        self._field = _FieldTracker(grids)
        self.fine = FineSystem(grids, self._a, self.source.function, c_fun)
        self._u0 = _initial_value(grids, u0)
        self._boundary = coarse_boundary_rows(grids)
        self.U: PETSc.Vec | None = None
        self._b: PETSc.Vec | None = None
        self._Fc: PETSc.Vec | None = None  # test^T F
        self._ksp: PETSc.KSP | None = None
        if self.petrov:
            self._local = LocalAssembly(self.basis)
            self._K = self._local.create()  # M/tau + K (system)
            self._M = self._local.create()  # M (history term)
        else:
            self._product = CoarseProduct(grids)
            self._A: PETSc.Mat | None = None  # Mc/tau + S, fine
            self._M_G: PETSc.Mat | None = None  # B^T Mc B, while B is unchanged
            self._u_prev: PETSc.Vec | None = None  # Mc-side fine vector B_{m-1} U^{m-1}
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
        if self.petrov:
            self._petrov_step(first, changed, load_changed)
        else:
            self._galerkin_step(coefficient, first, changed, load_changed)
        t2 = time.perf_counter()
        solve_checked(self._ksp, self._b, self.U)
        self._reconstructed = None
        self.timings = {
            "basis_update": t1 - t0,
            "coarse_assembly": t2 - t1,
            "coarse_solve": time.perf_counter() - t2,
        }
        self.touched_fine = {
            "fine_assemblies": self.fine.assemblies - fine_before,
            "patches_recomputed": self.basis.num_recomputed,
        }

    def _coarse_load(self, test: PETSc.Mat) -> PETSc.Vec:
        """test^T F with zeros at the boundary coarse vertices."""
        if self._Fc is None:
            self._Fc = test.createVecRight()
        test.multTranspose(self.fine.F, self._Fc)
        self._Fc.setValues(self._boundary, np.zeros(self._boundary.size))
        self._Fc.assemble()
        return self._Fc

    def _start(self, M: PETSc.Mat, test: PETSc.Mat) -> None:
        """U^0: the Mc-projection of u0 (test^T Mc B_1 U^0 = test^T Mc u0), or 0."""
        self.U = M.createVecRight()
        self._b = M.createVecRight()
        self.U.set(0.0)
        if self._u0 is None:
            return
        w = self.fine.Mc.createVecLeft()
        self.fine.Mc.mult(self._u0.x.petsc_vec, w)
        test.multTranspose(w, self._b)
        self._b.setValues(self._boundary, np.zeros(self._boundary.size))
        self._b.assemble()
        projection = M.copy()
        projection.zeroRowsColumns(self._boundary, diag=1.0)
        U = solve_coarse(projection, self._b)
        U.copy(self.U)
        for obj in (w, projection, U):
            obj.destroy()

    def _petrov_step(self, first: bool, changed: bool, load_changed: bool) -> None:
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
            if self._ksp is None:
                self._ksp = coarse_solver(self._K)
            self._ksp.setOperators(self._K)

    def _galerkin_step(
        self, coefficient: StepCoefficient, first: bool, changed: bool, load_changed: bool
    ) -> None:
        """b = B_m^T (Mc B_{m-1} U^{m-1}/tau + F), K = B_m^T (Mc/tau + S) B_m."""
        if changed and not first:  # B still holds the previous basis: u~^{m-1} = B U
            self.basis.B.mult(self.U, self._u_prev)
        B = self.basis.matrix()
        if first:
            self._u_prev = B.createVecLeft()
            M = coarse_matrix(self.grids, self.fine.Mc, B)
            self._start(M, B)
            M.destroy()
            B.mult(self.U, self._u_prev)
        a_changed = self._field.changed(coefficient)
        if a_changed:
            self._a.x.array[:] = coefficient.function().x.array
            self._A = _copy_into(self._A, self.fine.assemble_stiffness(), self.fine.Mc, self.tau)
        if first or changed or a_changed:
            K = self._product(self._A, B, version=self.basis.pattern_version)
            if self._ksp is None:
                self._ksp = coarse_solver(K)
            self._ksp.setOperators(K)
        if first or changed:
            if self._M_G is not None:
                self._M_G.destroy()
                self._M_G = None
            work = self.fine.Mc.createVecLeft()  # b = B^T (Mc u~^{m-1} / tau + F)
            self.fine.Mc.mult(self._u_prev, work)
            work.scale(1.0 / self.tau)
            work.axpy(1.0, self.fine.F)
            B.multTranspose(work, self._b)
            self._b.setValues(self._boundary, np.zeros(self._boundary.size))
            self._b.assemble()
            work.destroy()
            if self._Fc is not None:
                self._Fc.destroy()
                self._Fc = None
            return
        if self._M_G is None:  # the basis stays: the history term is B^T Mc B U^{m-1}
            self._M_G = coarse_matrix(self.grids, self.fine.Mc, B)
            self._M_G.zeroRowsColumns(self._boundary, diag=0.0)
        if self._Fc is None or load_changed:
            self._coarse_load(B)
        self._M_G.mult(self.U, self._b)
        self._b.aypx(1.0 / self.tau, self._Fc)

    def solution(self, out: dolfinx.fem.Function | None = None) -> dolfinx.fem.Function:
        """u~^m = B_m U^m as a Function on V_h (assembles B if needed). Collective."""
        if self._reconstructed is None:
            t0 = time.perf_counter()
            B = self.basis.matrix()
            u = B.createVecLeft()
            B.mult(self.U, u)
            self._reconstructed = to_function(self.grids.V_h, u, "u_ms")
            u.destroy()
            self.timings["reconstruction"] = time.perf_counter() - t0
        if out is not None:
            out.x.array[:] = self._reconstructed.x.array
            return out
        return self._reconstructed

    def coarse_solution(self) -> dolfinx.fem.Function:
        """U^m as a Function on V_H. Collective."""
        return to_function(self.grids.V_H, self.U, "U")

    def destroy(self, keep_basis: bool = False) -> None:
        """Free the PETSc objects (the basis too, unless ``keep_basis``). Collective."""
        objs = [self.U, self._b, self._Fc, self._ksp]
        if self.petrov:
            objs += [self._K, self._M]
        else:
            objs += [self._A, self._M_G, self._u_prev]
            self._product.destroy()
        for obj in objs:
            if obj is not None:
                obj.destroy()
        self.fine.destroy()
        if not keep_basis:
            self.basis.destroy()


Stepper = LODStepper | FEMStepper


def advance(
    grids: NestedGrids,
    coefficient: CoefficientSchedule,
    T: float,
    steps: int,
    steppers: list[Stepper],
    observer: Callable[[int, float, StepCoefficient], None] | None = None,
    progress: bool = False,
) -> None:
    """Advance ``steppers`` side by side over t_m = m T / steps, m = 1..steps, calling
    ``observer(m, t_m, coefficient)`` after each step. Collective."""
    state = StepCoefficient(grids, coefficient)
    tau = T / steps
    show = progress and grids.comm.rank == 0
    for m in progress_report(range(1, steps + 1), "time steps", "step", show):
        state.advance(m, m * tau)
        for stepper in steppers:
            stepper.step(state, m * tau)
        if observer is not None:
            observer(m, m * tau, state)
        check_interrupt(grids.comm)  # a signal on any rank: every rank stops here


@dataclass
class StepView:
    """What an observer of :func:`run_parabolic` sees after step m: the LOD stepper, the FEM
    stepper (None without a reference) and the coefficient of the step."""

    m: int
    t: float
    lod: LODStepper
    fem: FEMStepper | None
    coefficient: StepCoefficient

    @property
    def u_ms(self) -> dolfinx.fem.Function:
        """u~^m = B U^m (reconstructed on first access in this step)."""
        return self.lod.solution()

    @property
    def u_h(self) -> dolfinx.fem.Function:
        """u_h^m (needs the reference)."""
        if self.fem is None:
            raise ValueError("u_h needs run_parabolic(..., reference=True)")
        return self.fem.solution()

    @property
    def a(self) -> dolfinx.fem.Function:
        """a(t_m) as a DG0 Function."""
        return self.coefficient.function()


@dataclass
class ParabolicResult:
    """Per-step records (timings, recomputed patches; errors with a reference), the final LOD
    solution u~^M (``u_ms``), the final fine FEM solution u_h^M (None without a reference) and
    the multiscale basis (release it with ``basis.destroy()``)."""

    records: list[dict[str, Any]]
    u_ms: dolfinx.fem.Function
    u_h: dolfinx.fem.Function | None
    basis: MultiscaleBasis
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def final_errors(self) -> dict[str, float]:
        """Relative L2 and energy errors at t = T (needs the reference)."""
        last = self.records[-1]
        if "rel_l2_error" not in last:
            raise ValueError("errors need run_parabolic(..., reference=True)")
        return {"l2": last["rel_l2_error"], "energy": last["rel_energy_error"]}


def _check_time(T: float, steps: int, schedule: CoefficientSchedule) -> None:
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"final time T must be > 0, got {T}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps M must be an integer >= 1, got {steps!r}")
    if schedule.steps is not None and schedule.steps != steps:
        raise ValueError(
            f"coefficient stack has {schedule.steps} entries but steps M = {steps}; "
            "give one coefficient per step"
        )


def run_parabolic(
    grids: NestedGrids,
    coefficient: CoefficientSchedule,
    T: float,
    steps: int,
    layers: int,
    method: str = "galerkin",
    update: str = "full",
    tol: float = 0.0,
    capacity: CoefficientLike | float = 1.0,
    source: float | Callable[[float, npt.NDArray], npt.NDArray] = 1.0,
    u0: Callable[[npt.NDArray], npt.NDArray] | None = None,
    provider: CorrectorProvider | None = None,
    observer: Callable[[StepView], None] | None = None,
    progress: bool = False,
    reference: bool = False,
) -> ParabolicResult:
    """Backward Euler with the LOD (:class:`LODStepper`) and, with ``reference``, the fine FEM
    (:class:`FEMStepper`) side by side (:func:`advance`), errors recorded at every step.

    Args:
        grids: Nested meshes.
        coefficient: a(t_m, x) for m = 1..M.
        T: Final time (> 0); tau = T / steps.
        steps: M, number of time steps.
        layers: l >= 1.
        method: "galerkin" or "petrov-galerkin".
        update: Basis update strategy: "full" (recompute all correctors whenever a changed) or
            "selective" (only patches whose error indicator exceeds ``tol``).
        tol: Tolerance of the selective update.
        capacity: c > 0 (array, callable c(x, p), DG0 Function or number), constant in time.
        source: f: a number, or a callable f(t, x) evaluated at fine-cell midpoints.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.
        provider: Corrector provider (default: classical patch solves).
        observer: Called after each step with a :class:`StepView` (its ``u_ms`` reconstructs
            the fine LOD solution: ask for it only at output steps).
        progress: Progress bar over the time steps (rank 0).
        reference: Also advance the fine FEM and record the relative errors of u~ against it
            at every step (u~ is then reconstructed every step). Without it nothing
            fine-scale is solved.

    Collective. The time, sizes, method and step 1's coefficient are validated on every rank
    before the first step.
    """
    comm = grids.comm
    validate(comm, lambda: (_check_time(T, steps, coefficient), validate_method(method)))
    validate(comm, lambda: _check_source(source))
    first = StepCoefficient(grids, coefficient)
    first.advance(1, T / steps)
    first.values()  # validates step 1 before any work
    tau = T / steps
    lod = LODStepper(grids, layers, tau, method, update, tol, capacity, source, u0, provider)
    fem = FEMStepper(grids, tau, lod.fine.c, source, u0) if reference else None
    records: list[dict[str, Any]] = []

    def record(m: int, t: float, state: StepCoefficient) -> None:
        rec: dict[str, Any] = {
            "step": m,
            "t": t,
            "recomputed_patches": lod.basis.num_recomputed,
            "max_indicator": comm.allreduce(
                float(lod.basis.indicators.max(initial=0.0)), op=MPI.MAX
            ),
            "fine_assemblies": lod.touched_fine["fine_assemblies"],
        }
        if fem is not None:
            errors = relative_errors(
                lod.solution().x.petsc_vec, fem.u.x.petsc_vec, fem.fine.M, fem.fine.S
            )
            rec.update({"rel_l2_error": errors["l2"], "rel_energy_error": errors["energy"]})
        if observer is not None:
            observer(StepView(m, t, lod, fem, state))
        timings = {**lod.timings, **(fem.timings if fem is not None else {})}
        rec["timings"] = {k: comm.allreduce(v, op=MPI.MAX) for k, v in timings.items()}
        records.append(rec)

    advance(grids, coefficient, T, steps, [lod] + ([fem] if fem else []), record, progress)
    u_ms = lod.solution(out=dolfinx.fem.Function(grids.V_h, name="u_ms"))
    u_h = None
    if fem is not None:
        u_h = dolfinx.fem.Function(grids.V_h, name="u_h")
        u_h.x.array[:] = fem.u.x.array
        fem.destroy()
    lod.destroy(keep_basis=True)
    settings = {
        "T": T,
        "steps": steps,
        "tau": tau,
        "layers": layers,
        "method": method,
        "update": update,
        "tol": tol,
        "reference": reference,
    }
    return ParabolicResult(records, u_ms, u_h, lod.basis, settings)


def _check_positive_number(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_source(source: float | Callable) -> None:
    if not callable(source) and not np.isfinite(source):
        raise ValueError(f"source f must be a finite number or a callable f(t, x), got {source}")
