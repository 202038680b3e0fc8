"""Learned bases judged by the solution: the LOD solution of each corrector provider against the
classical LOD solution and the fine FEM solution of -div(a grad u) = f (elliptic, same grids).

A basis error says how far the learned Lambda~_j are from the classical ones; what a user
sees is the solution u~ = B~ U~ of the Galerkin LOD with that basis. :func:`solution_errors`
measures it for any providers (learned, baselines) on the coefficients of a family.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dolfinx_lod.basis import MultiscaleBasis, basis_errors
from dolfinx_lod.coefficients import Family, coefficient_function
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.lod import FineSystem, galerkin_solution, relative_errors

#: A learned solution whose error against the fine FEM exceeds this multiple of the classical
#: LOD's is reported as worse than classical (``train`` warns).
WORSE_FACTOR = 2.0


def _statistics(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{norm: {"mean", "max", "fields"}} of per-coefficient error dicts {norm: value}
    ("fields": the values of the coefficients in order)."""
    return {
        norm: {
            "mean": float(np.mean([v[norm] for v in values])),
            "max": float(np.max([v[norm] for v in values])),
            "fields": [float(v[norm]) for v in values],
        }
        for norm in values[0]
    }


def solution_errors(
    grids: NestedGrids,
    layers: int,
    family: Family,
    params: npt.NDArray[np.float64],
    providers: dict[str, Any],
    f: float = 1.0,
) -> dict[str, Any]:
    """Relative errors of the Galerkin LOD solution u~ of each provider's basis.

    For the coefficients a(., p), p in ``params``, and the source ``f``:

    - ``vs_classical[name]``: ||u~ - u_LOD|| / ||u_LOD|| (u_LOD: the classical LOD solution),
    - ``vs_fine[name]``: ||u~ - u_h|| / ||u_h|| (u_h: the fine FEM solution), with the
      classical LOD's own error ``vs_fine["classical"]``,

    each in the energy norm of a and in L2, ``{"energy": {"mean", "max", "fields"}, "l2":
    {...}}`` over the coefficients, and ``basis[name]``: the mean relative basis errors
    ``energy`` and ``nodal`` against the classical basis (as
    :func:`~dolfinx_lod.neural.provider.compare_providers`). Collective."""
    reference = MultiscaleBasis(grids, layers)
    bases = {name: MultiscaleBasis(grids, layers, provider=pr) for name, pr in providers.items()}
    to_classical: dict[str, list] = {name: [] for name in providers}
    to_fine: dict[str, list] = {name: [] for name in ("classical", *providers)}
    basis_sums = {name: np.zeros(2) for name in providers}
    for p in params:
        fine = FineSystem(grids, coefficient_function(grids, family.a, p), f)
        u_h = fine.solve(fine.S, fine.F)
        B_ref = reference.update(family.a, p)
        U, u_lod, K = galerkin_solution(grids, fine, B_ref)
        to_fine["classical"].append(relative_errors(u_lod, u_h, fine.M, fine.S))
        for name, basis in bases.items():
            B = basis.update(family.a, p)
            basis_sums[name] += basis_errors(grids, B, B_ref, fine.S)
            V, u, L = galerkin_solution(grids, fine, B)
            to_classical[name].append(relative_errors(u, u_lod, fine.M, fine.S))
            to_fine[name].append(relative_errors(u, u_h, fine.M, fine.S))
            for obj in (V, u, L):
                obj.destroy()
        for obj in (U, u_lod, K, u_h):
            obj.destroy()
        fine.destroy()
    for basis in (reference, *bases.values()):
        basis.destroy()
    return {
        "vs_classical": {k: _statistics(v) for k, v in to_classical.items()},
        "vs_fine": {k: _statistics(v) for k, v in to_fine.items()},
        "basis": {
            k: {"energy": v[0] / len(params), "nodal": v[1] / len(params)}
            for k, v in basis_sums.items()
        },
    }


def worse_than_classical(errors: dict[str, Any], name: str = "learned") -> float:
    """Ratio of the mean energy error against the fine FEM of provider ``name`` to that of the
    classical LOD (of :func:`solution_errors`); above :data:`WORSE_FACTOR`, ``train`` warns."""
    fine = errors["vs_fine"]
    return fine[name]["energy"]["mean"] / max(fine["classical"]["energy"]["mean"], 1e-300)


def judge_by_solution(errors: dict[str, Any], name: str = "learned") -> dict[str, Any]:
    """The summary of a learned basis judged by its solution (of :func:`solution_errors`):
    ``beats_baselines`` (per baseline: whether the mean energy error of the learned solution
    against the classical LOD solution is below the baseline's), ``note`` and ``warning``
    (None, or one line when the learned solution's error against the fine FEM exceeds
    :data:`WORSE_FACTOR` times the classical LOD's)."""
    mine = errors["vs_classical"][name]["energy"]["mean"]
    others = {k: v for k, v in errors["vs_classical"].items() if k != name}
    beaten = {k: bool(mine < v["energy"]["mean"]) for k, v in others.items()}
    ratio = worse_than_classical(errors, name)
    fine = errors["vs_fine"]
    warning = None
    if ratio > WORSE_FACTOR:
        warning = (
            f"the learned solution is {ratio:.1f}x worse than the classical LOD (energy error "
            f"against the fine FEM {fine[name]['energy']['mean']:.3g} vs "
            f"{fine['classical']['energy']['mean']:.3g}): train longer or on more fields, or "
            "use the classical basis"
        )
    missed = [k for k, v in beaten.items() if not v]
    note = (
        "the learned solution beats every baseline"
        if not missed
        else "the learned solution does NOT beat every baseline: " + ", ".join(missed)
    )
    return {
        "beats_baselines": beaten,
        "worse_than_classical": ratio,
        "note": note,
        "warning": warning,
    }
