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

The steppers (:class:`GalerkinStepper`, :class:`PetrovGalerkinStepper`, :func:`LODStepper`
choosing one by ``method``, and the fine :class:`FEMStepper`) live in
:mod:`dolfinx_lod.steppers`, the per-step inputs (:class:`CoefficientSchedule`,
:class:`StepCoefficient`) in :mod:`dolfinx_lod.schedule`; both are re-exported here.
:func:`run_parabolic` drives an LOD stepper and, with ``reference=True``, the fine FEM stepper
side by side (:func:`advance`), the comparison (errors per step) being an observer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import CoefficientLike
from dolfinx_lod.correctors import CorrectorProvider
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.lod import relative_errors, validate_method
from dolfinx_lod.parallel import validate
from dolfinx_lod.progress import progress as progress_report
from dolfinx_lod.schedule import CoefficientSchedule, StepCoefficient, check_source
from dolfinx_lod.steppers import (
    FEM_RTOL,
    UPDATES,
    FEMStepper,
    GalerkinStepper,
    LODStepper,
    PetrovGalerkinStepper,
    update_strategy,
)
from dolfinx_lod.updates import DEFAULT_TOL

__all__ = [
    "FEM_RTOL",
    "UPDATES",
    "CoefficientSchedule",
    "FEMStepper",
    "GalerkinStepper",
    "LODStepper",
    "ParabolicResult",
    "PetrovGalerkinStepper",
    "StepCoefficient",
    "StepView",
    "advance",
    "run_parabolic",
    "update_strategy",
]


Stepper = GalerkinStepper | PetrovGalerkinStepper | FEMStepper


def advance(
    grids: NestedGrids,
    coefficient: CoefficientSchedule,
    T: float,
    steps: int,
    steppers: list[Stepper],
    observer: Callable[[int, float, StepCoefficient], None] | None = None,
    progress: bool = False,
    state: StepCoefficient | None = None,
) -> None:
    """Advance ``steppers`` side by side over t_m = m T / steps, m = 1..steps, calling
    ``observer(m, t_m, coefficient)`` after each step (``state``: the StepCoefficient of
    ``coefficient`` to use, default a new one). Collective."""
    state = StepCoefficient(grids, coefficient) if state is None else state
    tau = T / steps
    show = progress and grids.comm.rank == 0
    for m in progress_report(range(1, steps + 1), "time steps", "step", show):
        state.advance(m, m * tau)
        for stepper in steppers:
            stepper.step(state, m * tau)
        if observer is not None:
            observer(m, m * tau, state)


@dataclass
class StepView:
    """What an observer of :func:`run_parabolic` sees after step m: the LOD stepper, the FEM
    stepper (None without a reference) and the coefficient of the step."""

    m: int
    t: float
    lod: GalerkinStepper | PetrovGalerkinStepper
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
    tol: float = DEFAULT_TOL,
    capacity: CoefficientLike = 1.0,
    source: CoefficientLike = 1.0,
    u0: Callable[[npt.NDArray], npt.NDArray] | None = None,
    provider: CorrectorProvider | None = None,
    observer: Callable[[StepView], None] | None = None,
    progress: bool = False,
    reference: bool = False,
    indicator: str = "coefficient",
    dirichlet: Any = None,
    flux: dict[str, Any] | None = None,
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
        tol: Tolerance of the selective update: a patch keeps its correctors while its error
            indicator e_T, a bound on the relative energy change of its correctors, is <= tol
            (default 0.1, :data:`~dolfinx_lod.updates.DEFAULT_TOL`; 0: recompute every patch
            where a changed).
        capacity: c > 0, constant in time, any form of :mod:`dolfinx_lod.inputs`.
        source: f, any form of :mod:`dolfinx_lod.inputs` or a callable (t, x) -> values.
        u0: Initial value u0(x) (x of shape (3, N)), default 0.
        provider: Corrector provider (default: classical patch solves).
        observer: Called after each step with a :class:`StepView` (its ``u_ms`` reconstructs
            the fine LOD solution: ask for it only at output steps).
        progress: Progress bar over the time steps (rank 0).
        reference: Also advance the fine FEM and record the relative errors of u~ against it
            at every step (u~ is then reconstructed every step). Without it nothing
            fine-scale is solved.
        indicator: Error indicator of the selective update: "coefficient" (from the
            coefficient alone, cheap) or "correctors" (see
            :class:`~dolfinx_lod.basis.SelectiveUpdate`).
        dirichlet: g on the Dirichlet sides, constant in time (default 0).
        flux: {side: q} on Neumann sides, constant in time.

    Collective. The time, sizes, method and step 1's coefficient are validated on every rank
    before the first step.
    """
    comm = grids.comm
    validate(comm, lambda: (_check_time(T, steps, coefficient), validate_method(method)))
    validate(comm, lambda: check_source(source))
    state = StepCoefficient(grids, coefficient)
    state.advance(1, T / steps)
    state.values()  # validates step 1 before any work
    tau = T / steps
    boundary = {"dirichlet": dirichlet, "flux": flux}
    lod = LODStepper(
        grids, layers, tau, method, update, tol, capacity, source, u0, provider,
        indicator=indicator, **boundary,
    )  # fmt: skip
    fem = FEMStepper(grids, tau, lod.fine.c, source, u0, **boundary) if reference else None
    recorder = _Recorder(lod, fem, observer)
    advance(grids, coefficient, T, steps, [lod] + ([fem] if fem else []), recorder, progress, state)
    u_ms = lod.solution(out=dolfinx.fem.Function(grids.V_h, name="u_ms"))
    u_h = None
    if fem is not None:
        u_h = dolfinx.fem.Function(grids.V_h, name="u_h")
        u_h.x.array[:] = fem.u.x.array
        fem.destroy()
    lod.destroy(keep_basis=True)
    settings = dict(T=T, steps=steps, tau=tau, layers=layers, method=method, update=update)
    settings.update(tol=tol, indicator=indicator, reference=reference)
    return ParabolicResult(recorder.records, u_ms, u_h, lod.basis, settings)


class _Recorder:
    """The per-step records of :func:`run_parabolic` (an observer of :func:`advance`)."""

    def __init__(self, lod, fem: FEMStepper | None, observer: Callable | None):
        self.lod, self.fem, self.observer = lod, fem, observer
        self.records: list[dict[str, Any]] = []

    def __call__(self, m: int, t: float, state: StepCoefficient) -> None:
        lod, fem, comm = self.lod, self.fem, self.lod.grids.comm
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
                lod.solution().x.petsc_vec, fem.u.x.petsc_vec, fem.fine.M, fem.energy_matrix
            )
            rec.update({"rel_l2_error": errors["l2"], "rel_energy_error": errors["energy"]})
        if self.observer is not None:
            self.observer(StepView(m, t, lod, fem, state))
        timings = {**lod.timings, **(fem.timings if fem is not None else {})}
        rec["timings"] = {k: comm.allreduce(v, op=MPI.MAX) for k, v in timings.items()}
        self.records.append(rec)
