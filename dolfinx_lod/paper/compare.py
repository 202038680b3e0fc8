"""Time loops that compare the classical LOD, LOD-ANN and baseline bases on one coefficient
schedule, and the error metrics of the paper."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import gather_cell_array, gather_vertex_array
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic


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
    """Run the parabolic loop with the classical correctors (``"lod"``, full update) and with
    each provider (name -> provider) on the coefficient a(x, p(t)); collect relative L2 errors at
    T of every basis against the classical LOD and against the fine FEM, per-step times, and
    gathered (n+1, n+1) snapshots (rank 0) at ``snapshot_steps``. Collective."""
    runs: dict[str, Any] = {}
    walls: dict[str, float] = {}
    snapshots: dict[str, dict[int, Any]] = {}
    trajectories: dict[str, list[npt.NDArray]] = {}  # owned u_ms values of every step
    coefficient = CoefficientSchedule.from_family(family.a, lambda t: family.check(schedule(t)))
    for name, provider in {"lod": None, **providers}.items():
        shots: dict[int, Any] = {}
        trajectory = trajectories.setdefault(name, [])

        def observe(view, shots=shots, trajectory=trajectory):
            owned_dofs = view.u_ms.function_space.dofmap.index_map.size_local
            trajectory.append(view.u_ms.x.array[:owned_dofs].copy())
            if view.m in snapshot_steps:
                owned = grids.fine_cell_keys.size
                a_fun = view.a
                shots[view.m] = {
                    "t": view.t,
                    "u": gather_vertex_array(grids, view.u_ms),
                    "fem": gather_vertex_array(grids, view.u_h),
                    "a": gather_cell_array(
                        grids, a_fun.x.array[a_fun.function_space.dofmap.list[:owned, 0]]
                    ),
                }

        t0 = time.perf_counter()
        res = run_parabolic(
            grids,
            coefficient,
            T,
            steps,
            layers,
            provider=provider,
            capacity=capacity,
            source=source,
            observer=observe,
            reference=True,
        )
        walls[name] = time.perf_counter() - t0
        runs[name] = res
        snapshots[name] = shots
    M = _mass(grids)
    ref = runs["lod"].u_ms.x.petsc_vec
    out: dict[str, Any] = {"snapshots": snapshots, "runs": {}}
    for name, res in runs.items():
        rec = res.records
        out["runs"][name] = {
            "rel_error_vs_lod": relative_errors(res.u_ms.x.petsc_vec, ref, M, M)["l2"],
            "rel_error_vs_lod_euclidean_all_steps": euclidean_error(
                grids.comm, trajectories[name], trajectories["lod"]
            ),
            "rel_error_vs_fem": res.final_errors["l2"],
            "basis_seconds_per_step": float(np.mean([r["timings"]["basis_update"] for r in rec])),
            "coarse_seconds_per_step": float(
                np.mean(
                    [r["timings"]["coarse_assembly"] + r["timings"]["coarse_solve"] for r in rec]
                )
            ),
            "fem_seconds_per_step": float(
                np.mean([r["timings"]["fine_assembly"] + r["timings"]["fine_solve"] for r in rec])
            ),
            "wall_seconds": walls[name],
        }
        res.basis.destroy()
    M.destroy()
    return out


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
