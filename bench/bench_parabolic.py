"""Benchmark: parabolic LOD with a coefficient that changes every step in a tenth of the domain.

Run by hand, e.g.

    mpirun -n 2 python bench/bench_parabolic.py --out bench/results/parabolic-2.json

(H, h, l) = (1/16, 1/128, 2), T = 1, 24 steps. The coefficient is a rough field (values in
[0.01, 1] per fine cell) multiplied by 1 + 0.5 sin(2 pi t) inside the lower-left square of
40 x 40 fine cells (9.8 % of the domain). For the full recompute and selective updates
(several tolerances) it reports the mean wall time per step of the LOD (basis update, coarse
assembly, coarse solve) and of the fine FEM (assembly, solve), the patches recomputed per step
and the relative L2/energy errors at T against the fine FEM.
"""

from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from harness import grid_parser, machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_json
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic


def coefficient_stack(n: int, steps: int, region: int, T: float) -> np.ndarray:
    base = dl.coefficients.random_coefficient(n, 0.01, 1.0, seed=0)
    stack = np.repeat(base[None], steps, axis=0)
    for m in range(steps):
        stack[m, :region, :region] *= 1 + 0.5 * np.sin(2 * np.pi * (m + 1) * T / steps)
    return stack


def main() -> None:
    parser = grid_parser(__doc__, 16, 128, 2)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--tols", type=float, nargs="+", default=[0.0, 0.05, 0.2])
    parser.add_argument("--out", type=Path, default=Path("bench/results/parabolic.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    T = 1.0
    region = int(round(np.sqrt(0.1) * args.fine))
    g = dl.create_nested_grids(comm, args.coarse, args.fine)
    schedule = CoefficientSchedule.from_stack(coefficient_stack(args.fine, args.steps, region, T))
    runs = [("full", 0.0)] + [("selective", tol) for tol in args.tols]
    results = []
    for update, tol in runs:
        res = run_parabolic(
            g, schedule, T, args.steps, args.layers, update=update, tol=tol, reference=True
        )
        later = res.records[1:]  # step 1 computes the whole basis in every strategy
        mean = {k: float(np.mean([r["timings"][k] for r in later])) for k in later[0]["timings"]}
        results.append(
            {
                "update": update,
                "tol": tol,
                "lod_seconds_per_step": mean["basis_update"]
                + mean["coarse_assembly"]
                + mean["coarse_solve"],
                "fem_seconds_per_step": mean["fine_assembly"] + mean["fine_solve"],
                "mean_step_seconds": mean,
                "first_step_basis_seconds": res.records[0]["timings"]["basis_update"],
                "recomputed_patches_per_step": float(
                    np.mean([r["recomputed_patches"] for r in later])
                ),
                "rel_l2_error_final": res.final_errors["l2"],
                "rel_energy_error_final": res.final_errors["energy"],
            }
        )
        res.basis.destroy()
    if comm.rank == 0:
        head = (
            "update",
            "tol",
            "patches/step",
            "LOD s/step",
            "FEM s/step",
            "L2 err at T",
            "energy err",
        )
        print("".join(f"{c:>14}" for c in head))
        for r in results:
            row = (
                r["update"],
                r["tol"],
                f"{r['recomputed_patches_per_step']:.1f}",
                f"{r['lod_seconds_per_step']:.3f}",
                f"{r['fem_seconds_per_step']:.3f}",
                f"{r['rel_l2_error_final']:.4e}",
                f"{r['rel_energy_error_final']:.4e}",
            )
            print("".join(f"{c:>14}" for c in row))
        write_json(
            args.out,
            {
                "H": f"1/{args.coarse}",
                "h": f"1/{args.fine}",
                "l": args.layers,
                "steps": args.steps,
                "T": T,
                "changing_region_cells": region * region,
                "ranks": comm.size,
                "machine": machine(),
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
