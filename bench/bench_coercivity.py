"""Benchmark: is the Petrov–Galerkin coarse system of the classical local operators coercive?

    python bench/bench_coercivity.py --out bench/results/coercivity-battery-32.json

For each (H, h, l) of ``--configs`` and the battery schedule of bench_step.py (``--steps``
backward Euler steps on [0, 1], at the steps ``--at``): the classical local operators
(K_T, M_T) assembled to the coarse matrices (:class:`~dolfinx_lod.lod.LocalAssembly`), then on
the free coarse vertices the eigenvalues of the symmetric part (K + K^T) / 2 of the coarse
stiffness (a negative one: K is not coercive, the Petrov–Galerkin LOD has no stability
guarantee) and the smallest singular value of the step's system M/tau + K (near zero: a
nearly singular step, which small errors of learned operators can make singular). Dense
eigensolvers: serial, for N_H = 32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_step import battery_parameter
from harness import machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import LocalAssembly, coarse_boundary_rows


def free_dense(local: LocalAssembly, weight_K: float, weight_M: float, free) -> np.ndarray:
    """sum_T (weight_K K_T + weight_M M_T) as a dense array on the free coarse vertices."""
    A = local.assemble(local.create(), weight_K, weight_M, 1.0)
    dense = A.convert("dense").getDenseArray()[np.ix_(free, free)].copy()
    A.destroy()
    return dense


def spectra(grids, layers: int, family, steps: int, at: list[int]) -> list[dict]:
    """Per step of ``at``: eigenvalues of sym(K) (negative count, min, max) on the free coarse
    vertices and the smallest singular value of M/tau + K."""
    tau, out = 1.0 / steps, []
    free = np.ones(grids.V_H.dofmap.index_map.size_local, dtype=bool)
    free[coarse_boundary_rows(grids)] = False
    with MultiscaleBasis(grids, layers, capacity=1.0) as basis:
        local = LocalAssembly(basis)
        for m in at:
            basis.update(family.a, battery_parameter(family, m * tau), assemble=False)
            K = free_dense(local, 1.0, 0.0, free)
            system = K + free_dense(local, 0.0, 1.0 / tau, free)
            eig = np.linalg.eigvalsh(0.5 * (K + K.T))
            out.append(
                {
                    "step": m,
                    "negative_eigenvalues": int((eig < 0).sum()),
                    "min_eigenvalue": float(eig[0]),
                    "max_eigenvalue": float(eig[-1]),
                    "min_singular_value": float(np.linalg.svd(system, compute_uv=False)[-1]),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", nargs="+", default=["32,128,2", "32,128,3", "32,512,2"], help="N_H,N_h,l"
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--at", type=int, nargs="+", default=[1, 3, 4, 8, 12])
    parser.add_argument("--out", type=Path, default=Path("bench/results/coercivity.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.size != 1:
        raise SystemExit("bench_coercivity.py is serial (dense eigensolvers)")
    runs = []
    for config in args.configs:
        N, n, layers = (int(v) for v in config.split(","))
        grids = dl.create_nested_grids(comm, N, n)
        family = dl.coefficients.family("battery", n)
        steps = spectra(grids, layers, family, args.steps, args.at)
        runs.append({"H": 1 / N, "h": 1 / n, "layers": layers, "steps": steps})
        worst = min(s["min_eigenvalue"] for s in steps)
        print(f"(1/{N}, 1/{n}, {layers}): min eigenvalue of sym(K) {worst:.3g}", flush=True)
    result = {"benchmark": "coercivity", "family": "battery", "steps": args.steps}
    write_json(args.out, {**result, "runs": runs, "machine": machine()})


if __name__ == "__main__":
    main()
