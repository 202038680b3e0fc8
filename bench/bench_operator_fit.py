"""Benchmark: held-out accuracy of the learned Petrov–Galerkin local operators (K_T, M_T)
against the number of training parameters and the network size, on a subset of the patches.

Run by hand, e.g.

    python bench/bench_operator_fit.py --out bench/results/operator-fit-32-512-2.json

The operators of every patch are fitted independently (:class:`LearnedOperators`, one network
per patch, each with its own loss), so a random subset of the patches (``--patches``, plus the
two corner cells) measures the fit at the cost of a few patch solves per parameter: the
classical (K_T, M_T) at ``--train`` training parameters (the family's low-discrepancy points)
and ``--test`` held-out ones, then every fit of ``--fits`` (samples K, width, depth, epochs)
on the first K training parameters. Reported per fit: the final normalized training loss and
the held-out relative Frobenius errors ||K~ - K||_F / ||K||_F and likewise for M, summed over
the patches and parameters (as :func:`dolfinx_lod.neural.operators.operator_errors`).
One rank.
"""

import argparse
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import torch
from harness import grid_parser, machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import fine_cell_midpoints
from dolfinx_lod.io import write_json
from dolfinx_lod.neural.operators import LearnedOperators, max_patch_vertices, pack_operators


def operator_samples(basis, patches, family, params, size: int) -> np.ndarray:
    """Classical [K_T; M_T] of ``patches`` (capacity 1) at each parameter, flattened and padded
    as :func:`dolfinx_lod.neural.operators.operator_samples`: shape (G, K, 2 size 2^d)."""
    g = basis.grids
    corners = 2**g.dim
    points = [fine_cell_midpoints(g, patch.fine_cell_keys(g)) for patch in patches]
    ones = [np.ones(x.shape[1]) for x in points]
    out = np.zeros((len(patches), len(params), 2 * size * corners))
    for k, p in enumerate(params):
        a = [family.a(x, p) for x in points]
        pairs = basis.patch_problems.correctors_and_operators(patches, a, ones)
        out[:, k] = pack_operators([ops for _, ops in pairs], size, corners)
    return out


def relative_errors(pred: np.ndarray, ref: np.ndarray, half: int) -> dict[str, float]:
    """Relative Frobenius errors of the K and M parts (columns before / after ``half``)."""
    out = {}
    for name, part in (("K", slice(0, half)), ("M", slice(half, None))):
        d, r = pred[..., part] - ref[..., part], ref[..., part]
        out[name] = float(np.sqrt((d**2).sum() / (r**2).sum()))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = grid_parser(__doc__, 32, 512, 2)
    parser.add_argument("--family", choices=("battery", "cont"), default="battery")
    parser.add_argument("--patches", type=int, default=16, help="random patches (+ 2 corners)")
    parser.add_argument("--train", type=int, default=160, help="training parameters (160)")
    parser.add_argument("--test", type=int, default=20, help="held-out parameters (20)")
    parser.add_argument(
        "--fits",
        nargs="+",
        default=["40,32,3,2000", "80,32,3,2000", "160,32,3,2000", "40,64,3,5000"],
        help="fits K,width,depth,epochs (K <= --train)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/operator-fit.json"))
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    fits = [tuple(int(v) for v in f.split(",")) for f in args.fits]
    if any(len(f) != 4 or not 1 <= f[0] <= args.train for f in fits):
        parser.error(f"--fits: K,width,depth,epochs with 1 <= K <= {args.train}; got {args.fits}")
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, args.coarse, args.fine)
    family = dl.coefficients.family(args.family, args.fine)
    basis = dl.MultiscaleBasis(g, args.layers, capacity=1.0)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(basis.patches), min(args.patches, len(basis.patches)), replace=False)
    corners = [0, args.coarse - 1]  # keys of the cells (0, 0) and (N_H - 1, 0)
    index = sorted(set(chosen.tolist()) | set(corners))
    patches = [basis.patches[i] for i in index]
    size = max_patch_vertices(g.coarse, args.layers, g.dim)
    train_p = family.training_parameters(args.train)
    test_p = family.test_parameters(args.test, seed=10_000)
    t0 = time.perf_counter()
    y_train = operator_samples(basis, patches, family, train_p, size)
    y_test = operator_samples(basis, patches, family, test_p, size)
    sampling = time.perf_counter() - t0
    half = size * 2**g.dim
    results = []
    for K, width, depth, epochs in fits:
        nets = LearnedOperators(
            [p.cell for p in patches],
            [len(p.coarse_vertex_keys(g.coarse)) for p in patches],
            family,
            size,
            width,
            depth,
            g.dim,
        )
        t0 = time.perf_counter()
        loss = nets.fit(train_p[:K], y_train[:, :K], epochs=epochs)
        seconds = time.perf_counter() - t0
        pred = np.stack([nets.evaluate(p) for p in test_p], axis=1)
        errors = relative_errors(pred, y_test, half)
        results.append(
            {
                "samples": K,
                "width": width,
                "depth": depth,
                "epochs": epochs,
                "fit_loss": float(loss.mean()),
                "held_out_error": errors,
                "fit_seconds": seconds,
            }
        )
        print(results[-1], flush=True)
    basis.destroy()
    write_json(
        args.out,
        {
            "benchmark": "operator_fit",
            "H": 1 / args.coarse,
            "h": 1 / args.fine,
            "layers": args.layers,
            "family": args.family,
            "cells": [p.cell for p in patches],
            "train_parameters": args.train,
            "test_parameters": args.test,
            "sampling_seconds": sampling,
            "machine": machine(),
            "fits": results,
        },
    )


if __name__ == "__main__":
    main()
