"""Benchmark: learned local operators for a user's family given as samples (field K[i] at
parameter P[i], :func:`dolfinx_lod.samples.params_family`, as ``dolfinx-lod operators
--coefficients K.npy --params P.npy``), with the element part from the coefficient's
interpolation on each coarse cell (:mod:`dolfinx_lod.neural.element_part`).

Run by hand, e.g.

    python bench/bench_operator_samples.py --out bench/results/operator-samples-16-128-2.json

Families on n x n fine cells (``--fine``), p in [0, 1], ``--samples`` training fields then
``--test`` held-out ones (P uniform at random, seeded):

- ``discs``: 12 fixed discs of a = 1 + 99 p in a = 1 (affine in p: the interpolation is exact);
- ``growing``: 12 discs of a = 100 whose radii grow with p (a moving high-contrast interface:
  the fields of new p are not in the span of the training fields).

Reported per family (:func:`~dolfinx_lod.neural.operators.train_operators`): the held-out
operator error, the element interpolation (points per coarse cell, error of the online element
part against the exact one at the held-out fields, coarse cells that fell back), the seconds of
the element part for one p exact (a on every fine cell of T) and interpolated, the offline
seconds. One rank.
"""

import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import torch
from harness import grid_parser, machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_json
from dolfinx_lod.neural.operators import train_operators
from dolfinx_lod.samples import params_family


def fields(kind: str, n: int, params: np.ndarray) -> np.ndarray:
    """The (K, n, n) stack of family ``kind`` at the parameters ``params`` (K,)."""
    rng = np.random.default_rng(5)
    centres, radii = rng.uniform(0.1, 0.9, (12, 2)), rng.uniform(0.03, 0.07, 12)
    x, y = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n)
    distance = np.sqrt(
        (x[None] - centres[:, 0, None, None]) ** 2 + (y[None] - centres[:, 1, None, None]) ** 2
    )
    out = []
    for p in params:
        if kind == "discs":
            out.append(1.0 + 99.0 * p * (distance < radii[:, None, None]).any(axis=0))
        else:
            out.append(
                np.where((distance < radii[:, None, None] * (1 + p)).any(axis=0), 100.0, 1.0)
            )
    return np.stack(out)


def element_seconds(ops, family, p, repeat: int = 5) -> dict[str, float]:
    """Seconds of the element part for one p: interpolated (online) and exact."""
    element = ops.element
    t0 = time.perf_counter()
    for _ in range(repeat):
        element.values(family, p)
    t1 = time.perf_counter()
    for _ in range(repeat):
        element.exact(family, p)
    t2 = time.perf_counter()
    return {"interpolated": (t1 - t0) / repeat, "exact": (t2 - t1) / repeat}


def main() -> None:
    parser = grid_parser(__doc__, 16, 128, 2)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--test", type=int, default=8)
    parser.add_argument("--families", nargs="+", default=["discs", "growing"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/operator-samples.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    grids = dl.create_nested_grids(comm, args.coarse, args.fine)
    params = np.random.default_rng(1).uniform(0.0, 1.0, args.samples + args.test)
    results = {}
    for kind in args.families:
        family = params_family(fields(kind, args.fine, params), params, kind, box=((0.0,), (1.0,)))
        ops, report = train_operators(grids, args.layers, family, args.samples, args.test)
        test = family.test_parameters(args.test)
        report.pop("metadata")
        results[kind] = {**report, "element_seconds": element_seconds(ops, family, test[0])}
        if comm.rank == 0:
            print(kind, results[kind], flush=True)
    if comm.rank == 0:
        write_json(
            args.out,
            {
                "benchmark": "operator-samples",
                "H": 1 / args.coarse,
                "h": 1 / args.fine,
                "layers": args.layers,
                "ranks": comm.size,
                "samples": args.samples,
                "test": args.test,
                "machine": machine(),
                "families": results,
            },
        )


if __name__ == "__main__":
    main()
