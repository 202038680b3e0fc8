"""Benchmark: the patch saddle-point solver's MUMPS options, per patch of a selective step.

    python -m bench run patch-solver [-- --coarse 32 --fine 512 --layers 2]

On the interior patches of the ``defects`` coefficient of bench_time_to_solution.py (step 2;
with ``--dim 3`` on the unit cube, a random coefficient in [1, 20]), one rank: for each
variant of the ordering (ICNTL(7)) and scaling (ICNTL(8)) of the patch solver's MUMPS LDL^T,
the seconds of the numeric factorization and of the solve with the 2^d right-hand sides per
patch (the minimum over ``--rounds`` rounds, the variants interleaved so that a busy machine
slows them alike), nnz(L), and the largest difference of the correctors from the first
variant's (relative to their maximum). The symbolic analysis is done before timing (a time
loop reuses it per configuration).
"""

import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from bench_time_to_solution import defects_stack
from harness import grid_parser
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import random_coefficient
from dolfinx_lod.correctors import ClassicalCorrectors
from dolfinx_lod.grids import UNIT_CUBE
from dolfinx_lod.io import write_json
from dolfinx_lod.patch_problem import PATCH_SOLVER_OPTIONS, scale_of

#: variant name -> (ICNTL(7) ordering, ICNTL(8) scaling)
VARIANTS = {
    "AMD, automatic scaling": (0, 77),
    "METIS, automatic scaling": (5, 77),
    "PORD, automatic scaling": (4, 77),
    "AMD, no scaling": (0, 0),
    "METIS, no scaling": (5, 0),
    "PORD, no scaling": (4, 0),
}


def factor_and_solve(problem, a: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Seconds of the numeric factorization and of the solve for ``a``; the correctors."""
    problem.system(a)  # S and F assembled for a
    s = scale_of(a)
    problem.saddle.values[problem._S_position] = np.where(
        problem.space.bc_diagonal, 1.0, problem.space.S.data / s
    )
    problem.rhs.assemble()
    t0 = time.perf_counter()
    assert problem.saddle.factorize() is None
    problem.ksp.getPC().setUp()
    t1 = time.perf_counter()
    problem.ksp.matSolve(problem.rhs, problem.sol)
    t2 = time.perf_counter()
    problem._assembled = None  # the next call assembles again
    return t1 - t0, t2 - t1, problem.sol.getDenseArray()[: problem.num_dofs].copy()


def main() -> None:
    parser = grid_parser(__doc__, 32, 512, 2)
    parser.add_argument("--patches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--dim", type=int, choices=(2, 3), default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/patch-solver.json"))
    args = parser.parse_args()
    if args.dim == 2:
        g = dl.create_nested_grids(MPI.COMM_SELF, args.coarse, args.fine)
        a = defects_stack(args.fine, 2, 64)[1]
    else:
        g = dl.create_nested_grids(MPI.COMM_SELF, args.coarse, args.fine, UNIT_CUBE)
        a = random_coefficient(args.fine, 1.0, 20.0, seed=0, dim=3)
    basis = dl.MultiscaleBasis(g, args.layers)
    a_patches = basis.patch_coefficients(a)
    shape = (2 * args.layers + 1,) * args.dim
    interior = [i for i, p in enumerate(basis.patches) if p.configuration.shape == shape]
    chosen = interior[:: max(len(interior) // args.patches, 1)][: args.patches]
    problems = {}
    for k, (name, (ordering, scaling)) in enumerate(VARIANTS.items()):
        options = {**PATCH_SOLVER_OPTIONS, "mat_mumps_icntl_7": ordering}
        options["mat_mumps_icntl_8"] = scaling
        provider = ClassicalCorrectors(g, basis.Pi, f"bench{k}_", options)
        problems[name] = (
            provider,
            {i: provider.problem(basis.patches[i].configuration) for i in chosen},
        )
    best = {name: [np.inf, np.inf] for name in VARIANTS}
    reference, difference = {}, dict.fromkeys(VARIANTS, 0.0)
    for rnd in range(args.rounds + 1):  # round 0: the symbolic analyses, not timed
        for name, (_, by_patch) in problems.items():
            times = np.zeros(2)
            for i in chosen:
                *seconds, C = factor_and_solve(by_patch[i], a_patches[i])
                times += seconds
                ref = reference.setdefault(i, C)
                difference[name] = max(difference[name], np.abs(C - ref).max() / np.abs(ref).max())
            if rnd:
                best[name] = list(np.minimum(best[name], times / len(chosen)))
    result = {
        "benchmark": "patch-solver",
        "H": 1 / args.coarse,
        "h": 1 / args.fine,
        "layers": args.layers,
        "dim": args.dim,
        "patches": len(chosen),
        "rounds": args.rounds,
        "unknowns": int(problems[next(iter(VARIANTS))][1][chosen[0]].K.getSize()[0]),
        "variants": {},
    }
    for name, (provider, by_patch) in problems.items():
        factor = by_patch[chosen[0]].ksp.getPC().getFactorMatrix()
        f, s = best[name]
        result["variants"][name] = {
            "icntl_7": VARIANTS[name][0],
            "icntl_8": VARIANTS[name][1],
            "factor_ms": 1e3 * f,
            "solve_ms": 1e3 * s,
            "total_ms": 1e3 * (f + s),
            "nnz_L": int(factor.getMumpsInfog(20)),
            "max_rel_difference": float(difference[name]),
        }
        print(f"{name:26s} factor {1e3 * f:.2f} ms, solve {1e3 * s:.2f} ms")
        provider.destroy()
    basis.destroy()
    if MPI.COMM_WORLD.rank == 0:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
