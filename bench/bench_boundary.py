"""Benchmark: non-homogeneous boundary data, LOD energy error against the homogeneous problem.

    python -m bench run boundary        (or: python bench/bench_boundary.py --out FILE)

Problem: -div(a grad u) = 1 on the unit square (cube), a rough (independent values in
[0.1, 1] per fine cell), u = g = 1 - x/2 + 0.3 sin(pi y) on the Dirichlet sides (left,
bottom[, front, back]), flux a grad u . n = 1 on "top", insulated "right". For each (d, l,
method) it reports relative and absolute energy errors of u_ms against the fine FEM for

- ``homogeneous``: the same a, f, l and sides with g = 0, q = 0 (the target's yardstick);
- ``boundary``: solve_elliptic(..., dirichlet=g, flux={"top": 1}) (dolfinx_lod.boundary);
- ``no_boundary_correctors``: the same lifting without the patch-local correctors Q R of the
  fine remainder and of the flux (L = (P - sum C_T) G + r_h);
- ``naive``: the fine lifting g_D of the whole of g (F - S g_D, u = B U + g_D).
"""

import argparse
import time

import numpy as np
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.boundary import BoundaryData
from dolfinx_lod.coefficients import random_coefficient
from dolfinx_lod.grids import unit_box
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import FineSystem, coarse_matrix, coarse_rhs
from dolfinx_lod.norms import free_stiffness
from dolfinx_lod.solvers import solve_coarse

SIZES = {2: (8, 64, (1, 2, 3)), 3: (4, 16, (1, 2))}


def g_data(x):
    return 1.0 - x[0] / 2 + 0.3 * np.sin(np.pi * x[1])


def energy(S, v):
    y = S.createVecLeft()
    S.mult(v, y)
    value = float(np.sqrt(max(y.dot(v), 0.0)))
    y.destroy()
    return value


def variant(g, sol, a, S_free, u_h, lifting_of) -> dict:
    """Galerkin LOD with the lifting ``lifting_of(data, basis, fine)`` (the basis of sol)."""
    data = BoundaryData.create(g, g_data, {"top": 1.0})
    fine = FineSystem(g, sol.a, 1.0, flux=data.flux_form)
    B = sol.basis.matrix()
    L = lifting_of(data, sol.basis, fine)
    F = data.lifted_load(fine.F, fine.a, fine.bc, L)
    K = coarse_matrix(g, fine.S, B)
    b = coarse_rhs(g, B, F)
    U = solve_coarse(K, b)
    u = B.createVecLeft()
    B.mult(U, u)
    u.axpy(1.0, L)
    u.axpy(-1.0, u_h)
    error = energy(S_free, u)
    for obj in (L, F, K, b, U, u):
        obj.destroy()
    fine.destroy()
    return {"energy_abs": error, "energy": error / energy(S_free, u_h)}


def coarse_only(data, basis, fine):
    G, gD = data.coarse_values(basis.P), data.dirichlet_vector()
    PG = basis.P.createVecLeft()
    basis.P.mult(G, PG)
    L = basis.boundary_lifting(G)
    mask = g_mask(data.grids)
    L.array[:] += np.where(mask, gD.array - PG.array, 0.0)
    return L


def g_mask(grids):
    return grids.dirichlet_vertex_mask(grids.fine_sizes)[grids.fine_dof_keys]


def case(comm, dim: int, NH: int, n: int, layers: int, method: str) -> dict:
    neumann = ("right", "top")
    g = dl.create_nested_grids(comm, NH, n, unit_box(dim), neumann=neumann)
    a = random_coefficient(n, 0.1, 1.0, seed=3, dim=dim)
    out = {"dim": dim, "coarse": NH, "fine": n, "layers": layers, "method": method}
    t = time.perf_counter()
    with dl.solve_elliptic(g, a, layers, 1.0, method, reference=True) as hom:
        S = free_stiffness(g, hom.a)
        out["homogeneous"] = {
            "energy": hom.errors["energy"],
            "energy_abs": hom.errors["energy"] * energy(S, hom.u_h.x.petsc_vec),
        }
        S.destroy()
    kw = {"dirichlet": g_data, "flux": {"top": 1.0}, "reference": True}
    with dl.solve_elliptic(g, a, layers, 1.0, method, **kw) as sol:
        S = free_stiffness(g, sol.a)
        u_h = sol.u_h.x.petsc_vec
        out["boundary"] = {
            "energy": sol.errors["energy"],
            "energy_abs": sol.errors["energy"] * energy(S, u_h),
            "coarse_fem_energy": sol.errors["coarse_fem_energy"],
        }
        if method == "galerkin":
            out["no_boundary_correctors"] = variant(g, sol, a, S, u_h, coarse_only)
            naive = lambda data, basis, fine: data.dirichlet_vector()  # noqa: E731
            out["naive"] = variant(g, sol, a, S, u_h, naive)
        S.destroy()
    out["ratio_abs"] = out["boundary"]["energy_abs"] / out["homogeneous"]["energy_abs"]
    out["ratio_rel"] = out["boundary"]["energy"] / out["homogeneous"]["energy"]
    out["seconds"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rows = []
    for dim, (NH, n, layers) in SIZES.items():
        for layer in layers:
            for method in ("galerkin", "petrov-galerkin"):
                rows.append(case(comm, dim, NH, n, layer, method))
                if comm.rank == 0:
                    r = rows[-1]
                    print(
                        dim,
                        layer,
                        method,
                        round(r["ratio_abs"], 3),
                        round(r["ratio_rel"], 3),
                        r.get("naive", {}).get("energy"),
                        flush=True,
                    )
    if comm.rank == 0:
        problem = __doc__.split("\n\n")[2]
        write_json(args.out, {"rows": rows, "ranks": comm.size, "problem": problem})


if __name__ == "__main__":
    main()
