"""Backward Euler for c d_t u - div(a(t, x) grad u) = f(t, x), u = 0 on the boundary.

With tau = T / M and t_m = m tau, the fine FEM (paper (10b)) solves

    (Mc / tau + S(t_m)) u_h^m = Mc u_h^{m-1} / tau + F(t_m),

and the LOD (10a), with the multiscale basis B_m = B(a(t_m)) of the current coefficient,

    (B_m^T Mc B_m / tau + B_m^T S(t_m) B_m) U^m = B_m^T (Mc u~^{m-1} / tau + F(t_m)),

where u~^{m-1} = B_{m-1} U^{m-1} is the previous LOD solution as the fine function it is, not
its coefficients reinterpreted in the new basis. Petrov–Galerkin tests with P instead of B_m.
Initial value: u_h^0 = nodal interpolant of u0 in V_h; u~^0 = its Mc-orthogonal (capacity-
weighted L2) projection onto the multiscale space of the first step, B_1 U^0 with
(B_1^T Mc B_1) U^0 = B_1^T Mc u_h^0.
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
from tqdm import tqdm

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
    FineSystem,
    coarse_matrix,
    coarse_rhs,
    coarse_solver,
    fine_solver,
    relative_errors,
    solve_checked,
    solve_coarse,
    to_function,
    validate_method,
)
from dolfinx_lod.parallel import validate

UPDATES = ("full", "selective")


@dataclass
class CoefficientSchedule:
    """a(t_m, x) for the steps m = 1..M: ``at(m, t)`` returns (coefficient, parameter p).

    Build one with :meth:`from_stack` (one fine-cell array per step) or :meth:`from_family`
    (a family a(x, p) and a schedule p(t)).
    """

    at: Callable[[int, float], tuple[CoefficientLike, Any]]
    steps: int | None = None  # number of steps the schedule is defined for (None: any)

    @classmethod
    def from_stack(cls, stack: npt.ArrayLike, check: bool = True) -> CoefficientSchedule:
        """Coefficient on step m = stack[m - 1], an (M, n, n) array (orientation as for arrays
        of :mod:`dolfinx_lod.coefficients`). With ``check``, every step is validated now, one
        step at a time (a memory-mapped stack is read once), so that a bad value at a later
        step stops a run before its first step; pass False for a stack validated already."""
        stack = np.asarray(stack) if not isinstance(stack, np.ndarray) else stack
        if stack.ndim != 3:
            raise ValueError(f"coefficient stack must have shape (M, n, n); got {stack.shape}")
        validate_array_shape(stack[0], "coefficient stack entry")
        for m in range(stack.shape[0] if check else 0):
            check_coefficient_values(np.asarray(stack[m]), f"coefficient at step {m + 1}")
        return cls(lambda m, t: (stack[m - 1], None), steps=stack.shape[0])

    @classmethod
    def from_family(cls, a: Callable, schedule: Callable[[float], Any]) -> CoefficientSchedule:
        """Coefficient a(x, p(t_m)) on step m."""
        return cls(lambda m, t: (a, schedule(t)))


def update_strategy(update: str, tol: float = 0.0) -> UpdateStrategy:
    """The basis update strategy named ``update`` ("full" or "selective" with ``tol``)."""
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    return FullUpdate() if update == "full" else SelectiveUpdate(tol)


@dataclass
class ParabolicResult:
    """Per-step records (errors, recomputed patches, wall times), the final LOD solution
    u~^M (``u_ms``), the final fine FEM solution u_h^M and the multiscale basis."""

    records: list[dict[str, Any]]
    u_ms: dolfinx.fem.Function
    u_h: dolfinx.fem.Function
    basis: MultiscaleBasis
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def final_errors(self) -> dict[str, float]:
        """Relative L2 and energy errors at t = T."""
        last = self.records[-1]
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


class _Source:
    """f(t, x) as a DG0 Function on T_h (constant or callable f(t, x) at cell midpoints)."""

    def __init__(self, grids: NestedGrids, f: float | Callable):
        self.grids, self.f = grids, f
        if callable(f):
            self.function: float | dolfinx.fem.Function = dolfinx.fem.Function(grids.Q_h, name="f")
        else:
            self.function = float(f)

    def update(self, t: float) -> bool:
        """Set f(t); True if the load must be reassembled."""
        if not callable(self.f):
            return False
        values = owned_coefficient_values(
            self.grids, lambda x, p: self.f(p, x), t, name="source", positive=False
        )
        set_cell_values(self.function, values)
        return True


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
    observer: Callable[[int, float, ParabolicResult, dolfinx.fem.Function], None] | None = None,
    progress: bool = False,
) -> ParabolicResult:
    """Backward Euler for the LOD and the fine FEM side by side, with errors at every step.

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
        observer: Called after each step as observer(m, t_m, result_so_far, a_function).
        progress: Progress bar over the time steps (rank 0).

    Collective. All input is validated on every rank before the first step.
    """
    comm = grids.comm
    validate(comm, lambda: (_check_time(T, steps, coefficient), validate_method(method)))
    strategy: list[UpdateStrategy] = []
    validate(comm, lambda: strategy.append(update_strategy(update, tol)))
    c = capacity if isinstance(capacity, int | float) else None
    if c is not None:
        validate(comm, lambda: _check_positive_number(c, "capacity"))
    c_fun = c if c is not None else coefficient_function(grids, capacity, name="capacity")
    validate(comm, lambda: _check_source(source))
    a_first, p_first = coefficient.at(1, T / steps)
    a_fun = coefficient_function(grids, a_first, p_first, name="a")  # validates step 1
    basis = MultiscaleBasis(grids, layers, provider=provider)  # validates layers

    tau = T / steps
    f = _Source(grids, source)
    f.update(tau)
    fine = FineSystem(grids, a_fun, f.function, c_fun)
    A = fine.S.copy()  # Mc / tau + S(t_m), same sparsity as S
    fine_ksp = fine_solver(A)
    coarse_ksp: PETSc.KSP | None = None
    K: PETSc.Mat | None = None
    test = None if method == "galerkin" else basis.P
    u_h = fine.F.duplicate()
    u_ms = fine.F.duplicate()
    work, U = fine.F.duplicate(), None
    if u0 is not None:
        u0_fun = dolfinx.fem.Function(grids.V_h)
        u0_fun.interpolate(u0)
        u0_fun.x.petsc_vec.copy(u_h)
        fine.Mc.mult(u_h, work)
        B = basis.update(a_fun, p_first)
        M_ms = coarse_matrix(grids, fine.Mc, B)
        b = coarse_rhs(grids, B, work)
        U = solve_coarse(M_ms, b)
        B.mult(U, u_ms)
        for obj in (M_ms, b):
            obj.destroy()
    else:
        u_h.set(0.0)
        u_ms.set(0.0)

    records: list[dict[str, Any]] = []
    result = ParabolicResult(
        records, to_function(grids.V_h, u_ms, "u_ms"), to_function(grids.V_h, u_h, "u_h"), basis
    )
    previous = None
    for m in tqdm(
        range(1, steps + 1), desc="time steps", disable=not (progress and comm.rank == 0)
    ):
        t = m * tau
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        a_m, p_m = coefficient.at(m, t)
        values = owned_coefficient_values(grids, a_m, p_m, name=f"coefficient at step {m}")
        changed = previous is None or comm.allreduce(
            not np.array_equal(values, previous), op=MPI.LOR
        )
        previous = values
        set_cell_values(a_fun, values)
        load_changed = f.update(t)
        B = basis.update(a_fun, p_m, strategy=strategy[0])
        timings["basis_update"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if changed:
            fine.assemble_stiffness()
            A.zeroEntries()
            A.axpy(1.0, fine.S, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
            A.axpy(1.0 / tau, fine.Mc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
            fine_ksp.setOperators(A)
        if load_changed:
            fine.assemble_load()
        timings["fine_assembly"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if changed or basis.num_recomputed or K is None:
            if K is not None:
                K.destroy()
            K = coarse_matrix(grids, A, B, test)
            if coarse_ksp is None:
                coarse_ksp = coarse_solver(K)
            coarse_ksp.setOperators(K)
        fine.Mc.mult(u_ms, work)  # Mc u~^{m-1} / tau + F
        work.scale(1.0 / tau)
        work.axpy(1.0, fine.F)
        b = coarse_rhs(grids, B if test is None else test, work)
        timings["coarse_assembly"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        U = b.duplicate() if U is None else U
        solve_checked(coarse_ksp, b, U)
        b.destroy()
        B.mult(U, u_ms)
        timings["coarse_solve"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        fine.Mc.mult(u_h, work)
        work.scale(1.0 / tau)
        work.axpy(1.0, fine.F)
        solve_checked(fine_ksp, work, u_h)
        timings["fine_solve"] = time.perf_counter() - t0

        errors = relative_errors(u_ms, u_h, fine.M, fine.S)
        records.append(
            {
                "step": m,
                "t": t,
                "rel_l2_error": errors["l2"],
                "rel_energy_error": errors["energy"],
                "recomputed_patches": basis.num_recomputed,
                "max_indicator": comm.allreduce(
                    float(basis.indicators.max(initial=0.0)), op=MPI.MAX
                ),
                "timings": {k: comm.allreduce(v, op=MPI.MAX) for k, v in timings.items()},
            }
        )
        to_function(grids.V_h, u_ms, out=result.u_ms)
        to_function(grids.V_h, u_h, out=result.u_h)
        if observer is not None:
            observer(m, t, result, a_fun)

    for obj in (A, K, fine_ksp, coarse_ksp, work, u_ms, u_h, U):
        if obj is not None:
            obj.destroy()
    fine.destroy()
    result.settings = {
        "T": T,
        "steps": steps,
        "tau": tau,
        "layers": layers,
        "method": method,
        "update": update,
        "tol": tol,
    }
    return result


def _check_positive_number(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_source(source: float | Callable) -> None:
    if not callable(source) and not np.isfinite(source):
        raise ValueError(f"source f must be a finite number or a callable f(t, x), got {source}")
