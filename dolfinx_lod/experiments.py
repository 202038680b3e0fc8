"""Building blocks of the paper's experiments: cached LOD-ANN training and time loops that
compare the classical LOD, LOD-ANN and a baseline basis on the same coefficient schedule."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import gather_cell_array, gather_vertex_array
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.neural.training import TrainingSettings
from dolfinx_lod.neural.workflow import train_and_evaluate
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic


def cache_folder() -> Path:
    """Where trained models are cached: $DOLFINX_LOD_CACHE or ~/.cache/dolfinx_lod/models."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dolfinx_lod"
    return Path(os.environ.get("DOLFINX_LOD_CACHE", default / "models"))


def cached_training(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    test_samples: int,
    settings: TrainingSettings,
    cache: Path | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any], bool]:
    """Train (or reuse) the corrector networks for these settings. Collective.

    The model is stored in a folder keyed by a hash of everything that determines it, so a
    rerun with the same settings skips training. Returns (folder, training summary, reused).
    """
    key_data = {
        "family": family.name,
        "n": grids.fine,
        "NH": grids.coarse,
        "l": layers,
        "domain": grids.domain,
        "samples": samples,
        "test_samples": test_samples,
        "settings": asdict(settings),
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    folder = (cache or cache_folder()) / f"{family.name}-{key}"
    reused = (folder / "model.pt").exists() and (folder / "summary.json").exists()
    reused = grids.comm.allreduce(reused, op=MPI.LAND)
    if not reused:
        if grids.comm.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
        grids.comm.Barrier()
        train_and_evaluate(
            grids, layers, family, samples, test_samples, settings, folder, progress=progress
        )
    summary = grids.comm.bcast(
        json.loads((folder / "summary.json").read_text()) if grids.comm.rank == 0 else None
    )
    return folder, summary, reused


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
    coefficient = CoefficientSchedule.from_family(family.a, lambda t: family.check(schedule(t)))
    for name, provider in {"lod": None, **providers}.items():
        shots: dict[int, Any] = {}

        def observe(m, t, result, a_fun, shots=shots, name=name):
            if m in snapshot_steps:
                owned = grids.fine_cell_keys.size
                shots[m] = {
                    "t": t,
                    "u": gather_vertex_array(grids, result.u_ms),
                    "fem": gather_vertex_array(grids, result.u_h),
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
