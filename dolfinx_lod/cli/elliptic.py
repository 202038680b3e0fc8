"""``dolfinx-lod elliptic``: -div(a grad u) = f on a box with the LOD."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.cli.inputs import (
    learned_provider,
    load_boundary,
    load_coefficient,
    load_source,
    nested_grids,
)
from dolfinx_lod.cli.options import add_box_options, add_solve_options, counts
from dolfinx_lod.cli.output import basis_keys, boundary_keys, grid_keys
from dolfinx_lod.io import OutputSet, gather_vertex_array, write_json, write_npy, write_vtx
from dolfinx_lod.lod import solve_elliptic
from dolfinx_lod.parallel import OutputError, collective


def add_parser(sub) -> None:
    """The ``elliptic`` sub-command's options."""
    e = sub.add_parser(
        "elliptic",
        help="solve -div(a grad u) = f on a box (u = 0 or insulated sides) with the LOD",
    )
    e.add_argument(
        "--coefficient",
        type=Path,
        help="(n_y, n_x) .npy array A[iy, ix] of fine-cell values (y from the bottom), or "
        "(n_z, n_y, n_x) A[iz, iy, ix] (z from the bottom) in 3D; default: random values in "
        "[0.01, 1] on a --fine grid of --dim dimensions",
    )
    e.add_argument(
        "--fine",
        type=counts,
        default=128,
        help="n for the default coefficient: one number or NX,NY[,NZ] (128)",
    )
    e.add_argument(
        "--dim",
        type=int,
        help="space dimension of the default coefficient, 2 or 3 (2); with --coefficient it "
        "must match the array's axes",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the default coefficient (0)")
    add_box_options(e)
    add_solve_options(
        e,
        plot="skip the PNG figure",
        reference="also solve the fine FEM (and the coarse Q1 FEM): errors in summary.json, "
        "reference.npy",
    )
    e.add_argument(
        "--param",
        type=float,
        nargs="+",
        help="the family parameter p of a --model conditioned on p (not of a cnn model)",
    )


def run(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Run the elliptic LOD and write summary.json, solution.npy, reference.npy, elliptic.png
    as one set into --out."""
    t0 = time.perf_counter()
    A = load_coefficient(args, comm)
    grids = nested_grids(args, comm, A.shape)
    param = None if args.param is None else np.array([args.param])
    provider, param = learned_provider(args, comm, grids, "--param", param)
    source, boundary = load_source(args, comm, grids, False), load_boundary(args, comm)
    with OutputSet(comm, args.out) as output:
        sol = solve_elliptic(
            grids,
            A,
            args.layers,
            f=source,
            method=args.method,
            p=None if param is None else param[0],
            progress=True,
            reference=args.reference,
            provider=provider,
            **boundary,
        )
        try:  # the PETSc objects are destroyed on every rank together, also after an error
            summary = _output(args, comm, grids, A, sol, output, t0)
        finally:
            sol.destroy()
        output.commit()
    return summary


def _output(args, comm, grids, A, sol, output: OutputSet, t0: float) -> dict:
    """Write the result set; return the summary. Collective."""
    u_ms = gather_vertex_array(grids, sol.u_ms)
    u_h = gather_vertex_array(grids, sol.u_h) if args.reference else None
    summary = {
        "command": "elliptic",
        "method": args.method,
        **grid_keys(grids),
        "l": args.layers,
        "ranks": comm.size,
        **boundary_keys(args),
        "coefficient": str(args.coefficient) if args.coefficient else f"random(seed={args.seed})",
        "reference": args.reference,
        **basis_keys(args),
        "timings": sol.timings,
        "files": {
            "solution": "solution.npy",
            "solution_vtx": "solution.bp",
            "coefficient_vtx": "coefficient.bp",
        },
        "version": dolfinx_lod.__version__,
    }
    fields = [sol.u_ms, sol.u_h] if args.reference else [sol.u_ms]
    write_vtx(output.path("solution.bp"), fields)
    write_vtx(output.path("coefficient.bp"), [sol.a])
    if args.reference:
        summary.update(
            {
                "rel_l2_error": sol.errors["l2"],
                "rel_energy_error": sol.errors["energy"],
                "coarse_fem_rel_l2_error": sol.errors["coarse_fem_l2"],
                "coarse_fem_rel_energy_error": sol.errors["coarse_fem_energy"],
            }
        )
        summary["files"]["reference"] = "reference.npy"
    with collective(comm, OutputError):
        if comm.rank == 0:
            _write_files(args, output, grids, A, u_ms, u_h, summary, t0)
    return summary


def _write_files(args, output: OutputSet, grids, A, u_ms, u_h, summary, t0) -> None:
    """The elliptic result files (rank 0); u_h is None without a reference."""
    write_npy(output.path("solution.npy"), u_ms)
    if u_h is not None:
        write_npy(output.path("reference.npy"), u_h)
    if not args.no_plot:
        from dolfinx_lod.plotting import plot_fields

        panels = [("coefficient a", np.asarray(A), True), ("LOD solution u_ms", u_ms, False)]
        if u_h is not None:
            panels.append(("abs(u_ms - u_h)", np.abs(u_ms - u_h), False))
        plot_fields(
            output.path("elliptic.png"),
            panels,
            grids.domain,
            log_scale=[True] + [False] * (len(panels) - 1),
        )
        summary["files"]["figure"] = "elliptic.png"
    summary["timings"]["wall"] = time.perf_counter() - t0
    write_json(output.path("summary.json"), summary)


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line."""
    errors = (
        f"relative L2 error {summary['rel_l2_error']:.3e}, energy error "
        f"{summary['rel_energy_error']:.3e} (plain Q1 FEM on T_H: "
        f"{summary['coarse_fem_rel_l2_error']:.3e}, "
        f"{summary['coarse_fem_rel_energy_error']:.3e}); "
        if "rel_l2_error" in summary
        else ""
    )
    return (
        f"{args.command}: n={summary['n']} NH={summary['NH']} l={summary['l']} "
        f"ranks={comm.size}: {errors}results in {args.out}/"
    )
