"""Benchmark: the 3D (hexahedral) classical basis and one LOD step against one fine FEM step.

Run by hand, e.g.

    mpirun -n 1 python bench/bench_3d.py --out bench/results/3d-1.json
    mpirun -n 2 python bench/bench_3d.py --out bench/results/3d-2.json

For every (H, h, l) on the unit cube with a rough coefficient (independent values in
[0.01, 1] per fine cell) it reports: the classical basis (set-up, all patch saddle-point
solves, assembly of B), the mean time of one patch solve (factorization + 8 right-hand sides)
and the patch sizes, the peak resident memory per rank, one backward Euler LOD step
(K = B^T (M / tau + S) B by PETSc products, coarse MUMPS solve, reconstruction B U) and one
fine FEM step (CG + GAMG, rtol 1e-8, on M / tau + S). The learned basis update against the
recompute is measured by demos/battery3d.py (it needs trained networks).
"""

import argparse
import resource
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from harness import machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.grids import unit_box
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import FineSystem, coarse_matrix, coarse_rhs
from dolfinx_lod.solvers import fine_solver, solve_coarse

SIZES = {"4-16-1": (4, 16, 1), "8-32-1": (8, 32, 1), "8-64-1": (8, 64, 1)}
TAU = 0.01


def bench(comm: MPI.Comm, NH: int, n: int, layers: int) -> dict:
    t0 = time.perf_counter()
    g = dl.create_nested_grids(comm, NH, n, unit_box(3))
    a = dl.coefficient_function(g, dl.coefficients.random_coefficient(n, seed=0, dim=3))
    fine = FineSystem(g, a)
    A = fine.S.copy()
    A.axpy(1.0 / TAU, fine.Mc)  # M / tau + S (Dirichlet rows: identity)
    comm.Barrier()
    t1 = time.perf_counter()
    basis = dl.MultiscaleBasis(g, layers)
    comm.Barrier()
    t2 = time.perf_counter()
    B = basis.update(a)
    comm.Barrier()
    t3 = time.perf_counter()
    # One LOD step: coarse matrix, coarse solve, fine reconstruction.
    K = coarse_matrix(g, A, B)
    b = coarse_rhs(g, B, fine.F)
    U = solve_coarse(K, b)
    u = B.createVecLeft()
    B.mult(U, u)
    comm.Barrier()
    t4 = time.perf_counter()
    ksp = fine_solver(A, rtol=1e-8)
    x = A.createVecRight()
    ksp.solve(fine.F, x)
    comm.Barrier()
    t5 = time.perf_counter()
    timing = {k: comm.allreduce(v, op=MPI.MAX) for k, v in basis.timings.items()}
    sizes = [basis.patch_problems.problem(p.configuration).num_dofs for p in basis.patches]
    patches = comm.allreduce(len(basis.patches))
    result = {
        "H": f"1/{NH}",
        "h": f"1/{n}",
        "l": layers,
        "ranks": comm.size,
        "fine_unknowns": (n + 1) ** 3,
        "coarse_cells": patches,
        "largest_patch_unknowns": comm.allreduce(max(sizes, default=0), op=MPI.MAX),
        "grids_and_fine_matrices_s": t1 - t0,
        "basis_setup_s": t2 - t1,
        "correctors_s": timing["correctors"],
        "assemble_B_s": timing["assemble_basis"],
        "basis_update_s": t3 - t2,
        "patch_solve_mean_s": timing["correctors"] * comm.size / patches,
        "lod_step_s": t4 - t3,
        "fem_step_s": t5 - t4,
        "fem_iterations": ksp.getIterationNumber(),
        "peak_rss_gib_max_rank": comm.allreduce(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, op=MPI.MAX
        ),
        "rel_l2_lod_vs_fem": float(np.sqrt(abs((u - x).dot(u - x)) / x.dot(x))),
    }
    for obj in (K, b, U, u, x, A, ksp):
        obj.destroy()
    basis.destroy()
    fine.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["4-16-1", "8-32-1"], choices=list(SIZES))
    parser.add_argument("--out", type=Path, default=Path("bench/results/3d.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    bench(comm, 2, 4, 1)  # warm up the JIT cache
    results = [bench(comm, *SIZES[size]) for size in args.sizes]
    if comm.rank == 0:
        keys = ("H", "h", "ranks", "basis_update_s", "patch_solve_mean_s", "lod_step_s")
        print("".join(f"{k:>20}" for k in (*keys, "fem_step_s")))
        for r in results:
            print("".join(f"{r[k]:>20.4g}" if isinstance(r[k], float) else f"{r[k]:>20}"
                          for k in (*keys, "fem_step_s")))  # fmt: skip
        write_json(args.out, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
