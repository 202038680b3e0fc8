"""Benchmark: Galerkin against Petrov–Galerkin LOD accuracy by patch layers l (elliptic).

Run by hand, e.g.

    python bench/bench_methods.py --out bench/results/methods-battery-16-128.json

The battery family (high-contrast collector layers) at one held-out parameter, -div(a grad u) = 1,
(H, h) = (1/--coarse, 1/--fine), l = 1..--max-layers: relative L2 and energy errors of both
methods against the fine FEM (``solve_elliptic(..., reference=True)``).
"""

import argparse
from pathlib import Path

import dolfinx_solver  # noqa: F401
from harness import machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import solve_elliptic


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="battery", choices=["battery", "cont"])
    parser.add_argument("--coarse", type=int, default=16)
    parser.add_argument("--fine", type=int, default=128)
    parser.add_argument("--max-layers", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/methods.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    family = dl.coefficients.family(args.family, args.fine)
    p = family.test_parameters(1, seed=7)[0]
    grids = dl.create_nested_grids(comm, args.coarse, args.fine)
    rows = []
    for layers in range(1, args.max_layers + 1):
        for method in ("galerkin", "petrov-galerkin"):
            solution = solve_elliptic(grids, family.a, layers, method=method, p=p, reference=True)
            rows.append({"layers": layers, "method": method, **solution.errors})
            solution.destroy()
            if comm.rank == 0:
                print(rows[-1], flush=True)
    result = {
        "benchmark": "methods",
        "family": args.family,
        "H": 1 / args.coarse,
        "h": 1 / args.fine,
        "ranks": comm.size,
        "machine": machine(),
        "rows": rows,
    }
    if comm.rank == 0:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
