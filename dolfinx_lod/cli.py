"""Command line: ``dolfinx-lod elliptic ...`` (run under ``mpirun -n N`` for parallel runs)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.coefficients import random_coefficient, validate_array_shape
from dolfinx_lod.grids import create_nested_grids
from dolfinx_lod.io import gather_vertex_array, write_json, write_npy
from dolfinx_lod.lod import METHODS, solve_elliptic
from dolfinx_lod.parallel import validate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dolfinx-lod", description="Localized orthogonal decomposition with DOLFINx."
    )
    parser.add_argument("--version", action="version", version=dolfinx_lod.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser(
        "elliptic",
        help="solve -div(a grad u) = f, u = 0 on the unit square, with the LOD and the fine FEM",
    )
    e.add_argument(
        "--coefficient",
        type=Path,
        help="(n, n) .npy array of fine-cell values (row = y index from the bottom); default: "
        "random values in [0.01, 1] on a --fine x --fine grid",
    )
    e.add_argument("--fine", type=int, default=128, help="n for the default coefficient (128)")
    e.add_argument("--seed", type=int, default=0, help="seed of the default coefficient (0)")
    e.add_argument("--coarse", type=int, required=True, help="N_H, coarse cells per direction")
    e.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    e.add_argument("--method", choices=METHODS, default="galerkin")
    e.add_argument("--source", type=float, default=1.0, help="constant source f (1)")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    return parser


def _load_coefficient(args: argparse.Namespace, comm: MPI.Comm) -> np.ndarray:
    """The coefficient array: memory-mapped from --coefficient, or the built-in default."""
    out: list[np.ndarray] = []

    def load() -> None:
        if args.coefficient is None:
            if args.fine < 1:
                raise ValueError(f"--fine must be >= 1, got {args.fine}")
            out.append(random_coefficient(args.fine, seed=args.seed))
            return
        try:
            arr = np.load(args.coefficient, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"--coefficient {args.coefficient}: cannot read a .npy array ({e})"
            ) from e
        validate_array_shape(arr, "--coefficient")
        out.append(arr)

    validate(comm, load)
    return out[0]


def elliptic(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Run the elliptic LOD and write summary.json, solution.npy, reference.npy, elliptic.png."""
    t0 = time.perf_counter()
    A = _load_coefficient(args, comm)
    n = A.shape[0]
    grids = create_nested_grids(comm, args.coarse, n)
    sol = solve_elliptic(grids, A, args.layers, f=args.source, method=args.method, progress=True)
    u_ms = gather_vertex_array(grids, sol.u_ms)
    u_h = gather_vertex_array(grids, sol.u_h)
    summary = {
        "command": "elliptic",
        "method": args.method,
        "n": n,
        "NH": args.coarse,
        "l": args.layers,
        "ranks": comm.size,
        "source": args.source,
        "coefficient": str(args.coefficient) if args.coefficient else f"random(seed={args.seed})",
        "rel_l2_error": sol.errors["l2"],
        "rel_energy_error": sol.errors["energy"],
        "coarse_fem_rel_l2_error": sol.errors["coarse_fem_l2"],
        "coarse_fem_rel_energy_error": sol.errors["coarse_fem_energy"],
        "timings": sol.timings,
        "files": {"solution": "solution.npy", "reference": "reference.npy"},
        "version": dolfinx_lod.__version__,
    }
    if comm.rank == 0:
        write_npy(args.out / "solution.npy", u_ms)
        write_npy(args.out / "reference.npy", u_h)
        if not args.no_plot:
            from dolfinx_lod.plotting import plot_fields

            plot_fields(
                args.out / "elliptic.png",
                [
                    ("coefficient a", np.asarray(A), True),
                    ("LOD solution u_ms", u_ms, False),
                    ("|u_ms - u_h|", np.abs(u_ms - u_h), False),
                ],
                grids.domain,
                log_scale=[True, False, False],
            )
            summary["files"]["figure"] = "elliptic.png"
        summary["timings"]["wall"] = time.perf_counter() - t0
        write_json(args.out / "summary.json", summary)
    sol.basis.destroy()
    sol.K.destroy()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dolfinx-lod`` command."""
    args = _parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    try:
        summary = {"elliptic": elliptic}[args.command](args, comm)
    except ValueError as e:  # raised on every rank by the collective validation
        if comm.rank == 0:
            print(f"dolfinx-lod {args.command}: error: {e}", file=sys.stderr)
        return 2
    if comm.rank == 0:
        print(
            f"{args.command}: n={summary['n']} NH={summary['NH']} l={summary['l']} "
            f"ranks={comm.size}: relative L2 error {summary['rel_l2_error']:.3e}, energy error "
            f"{summary['rel_energy_error']:.3e} (plain Q1 FEM on T_H: "
            f"{summary['coarse_fem_rel_l2_error']:.3e}, "
            f"{summary['coarse_fem_rel_energy_error']:.3e}); "
            f"results in {args.out}/"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
