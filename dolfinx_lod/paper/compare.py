"""Time loops that compare the classical LOD, LOD-ANN and baseline bases on one coefficient
schedule, and the error metrics of the paper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import gather_cell_array, gather_vertex_array
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.timestepping import CoefficientSchedule, FEMStepper, LODStepper, advance


def compare_time_loops(
    grids: NestedGrids,
    layers: int,
    family: Family,
    schedule: Callable[[float], npt.ArrayLike],
    T: float,
    steps: int,
    providers: dict[str, Any],
    snapshot_steps: tuple[int, ...] = (),
    capacity: Any = 1.0,
    source: Any = 1.0,
) -> dict[str, Any]:
    """Advance the classical LOD (``"lod"``, full update), the LOD of each provider (name ->
    provider) and one fine FEM side by side on the coefficient a(x, p(t)) (one FEM trajectory
    for all); collect relative L2 errors at T of every basis against the classical LOD and
    against the fine FEM, per-step times (maximum over the ranks), and gathered (n+1, n+1)
    snapshots (rank 0) at ``snapshot_steps``. Collective."""
    coefficient = CoefficientSchedule.from_family(family.a, lambda t: family.check(schedule(t)))
    tau = T / steps
    lods = {
        name: LODStepper(
            grids, layers, tau, capacity=capacity, source=source, provider=provider, name=name
        )
        for name, provider in {"lod": None, **providers}.items()
    }
    fem = FEMStepper(grids, tau, capacity, source)
    record = _Record(grids, lods, fem, snapshot_steps)
    try:
        advance(grids, coefficient, T, steps, [fem, *lods.values()], record)
        return record.result()
    finally:
        for stepper in (fem, *lods.values()):
            stepper.destroy()


class _Record:
    """Observer of :func:`compare_time_loops`: trajectories, snapshots, step times."""

    def __init__(self, grids: NestedGrids, lods: dict, fem: FEMStepper, snapshot_steps):
        self.grids, self.lods, self.fem, self.snapshot_steps = grids, lods, fem, snapshot_steps
        self.trajectories: dict[str, list[npt.NDArray]] = {name: [] for name in lods}
        self.snapshots: dict[str, dict[int, Any]] = {name: {} for name in lods}
        self.times: dict[str, list[dict[str, float]]] = {name: [] for name in [*lods, "fem"]}

    def _max(self, timings: dict[str, float]) -> dict[str, float]:
        """The phase times of a step, maximum over the ranks (one reduction; every rank has
        the same phases)."""
        values = np.array(list(timings.values()), dtype=np.float64)
        self.grids.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.MAX)
        return dict(zip(timings, values.tolist(), strict=True))

    def __call__(self, m: int, t: float, state) -> None:
        grids = self.grids
        self.times["fem"].append(self._max(self.fem.timings))
        shot = m in self.snapshot_steps  # the same on every rank (a, u_h: None off rank 0)
        a = u_h = None
        if shot:
            a_fun, owned = state.function(), grids.fine_cell_keys.size
            a = gather_cell_array(grids, a_fun.x.array[a_fun.function_space.dofmap.list[:owned, 0]])
            u_h = gather_vertex_array(grids, self.fem.solution())
        for name, lod in self.lods.items():
            self.times[name].append(self._max(lod.timings))
            u = lod.solution()
            owned_dofs = u.function_space.dofmap.index_map.size_local
            self.trajectories[name].append(u.x.array[:owned_dofs].copy())
            if shot:
                u_ms = gather_vertex_array(grids, u)
                self.snapshots[name][m] = {"t": t, "u": u_ms, "fem": u_h, "a": a}

    def _mean(self, name: str, *phases: str) -> float:
        return float(np.mean([sum(r.get(k, 0.0) for k in phases) for r in self.times[name]]))

    def result(self) -> dict[str, Any]:
        """Errors and times of every run. Collective."""
        M = _mass(self.grids)
        ref = self.lods["lod"].solution().x.petsc_vec
        u_h = self.fem.solution().x.petsc_vec
        runs = {}
        for name, lod in self.lods.items():
            u = lod.solution().x.petsc_vec
            runs[name] = {
                "rel_error_vs_lod": relative_errors(u, ref, M, M)["l2"],
                "rel_error_vs_lod_euclidean_all_steps": euclidean_error(
                    self.grids.comm, self.trajectories[name], self.trajectories["lod"]
                ),
                "rel_error_vs_fem": relative_errors(u, u_h, M, M)["l2"],
                "basis_seconds_per_step": self._mean(name, "basis_update", "indicators"),
                "coarse_seconds_per_step": self._mean(name, "coarse_assembly", "coarse_solve"),
                "fem_seconds_per_step": self._mean("fem", "fine_assembly", "fine_solve"),
                # the sum of the timed phases of this run's steps (the runs share one loop)
                "phase_seconds_total": float(sum(sum(r.values()) for r in self.times[name])),
            }
        M.destroy()
        return {"snapshots": self.snapshots, "runs": runs}


def euclidean_error(comm: MPI.Comm, u: list[npt.NDArray], ref: list[npt.NDArray]) -> float:
    """The error metric of the paper's code: ||U - U_ref||_2 / ||U_ref||_2 with U the nodal
    values of all time steps stacked (Euclidean, unweighted). ``u``, ``ref``: owned values per
    step. Collective."""
    local = np.array(
        [
            sum(float(((a - b) ** 2).sum()) for a, b in zip(u, ref, strict=True)),
            sum(float((b**2).sum()) for b in ref),
        ]
    )
    diff, norm = comm.allreduce(local, op=MPI.SUM)
    return float(np.sqrt(diff / norm))


def basis_function(grids: NestedGrids, B, vertex_key: int) -> npt.NDArray | None:
    """Column of B for the coarse vertex ``vertex_key`` as an (n+1, n+1) array on rank 0."""
    from dolfinx_lod.lod import to_function

    e, x = B.createVecRight(), B.createVecLeft()
    if grids.comm.rank == 0:
        e.setValue(int(grids.coarse_dof_global[vertex_key]), 1.0)
    e.assemble()
    B.mult(e, x)
    u = to_function(grids.V_h, x)
    for v in (e, x):
        v.destroy()
    return gather_vertex_array(grids, u)


def _mass(grids: NestedGrids):
    """Fine L2 mass matrix M (for relative L2 errors)."""
    import dolfinx.fem.petsc

    from dolfinx_lod.forms import mass_form

    M = dolfinx.fem.petsc.assemble_matrix(mass_form(grids.V_h))
    M.assemble()
    return M
