"""summary.json keys and figures shared by the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dolfinx_lod.io import gather_cell_array, gather_vertex_array
from dolfinx_lod.parallel import OutputError, collective


def counts_key(counts: tuple[int, ...]) -> int | list[int]:
    """summary.json value of cell counts: one number when equal in every direction."""
    return counts[0] if len(set(counts)) == 1 else list(counts)


def grid_keys(grids) -> dict:
    """summary.json: the grid sizes (n, NH: a number, or [x, y(, z)] counts), domain, sides."""
    return {
        "dim": grids.dim,
        "n": counts_key(grids.fine_cells),
        "NH": counts_key(grids.coarse_cells),
        "domain": [list(grids.domain[0]), list(grids.domain[1])],
        "neumann": list(grids.neumann),
    }


def basis_keys(args: argparse.Namespace) -> dict:
    """summary.json: which basis (classical patch solves or a learned model) was used."""
    learned = args.model is not None
    operators = getattr(args, "operators", None)
    return {
        "basis": "learned" if learned else "classical",
        "model": str(args.model) if learned else None,
        "operators": str(operators) if operators is not None else None,
    }


def snapshot(path: Path, grids, view) -> None:
    """PNG of coefficient, LOD (and FEM and |error| with a reference) at step m. Collective;
    rank 0 plots."""
    a_fun = view.a
    owned = grids.fine_cell_keys.size
    a = gather_cell_array(grids, a_fun.x.array[a_fun.function_space.dofmap.list[:owned, 0]])
    lod = gather_vertex_array(grids, view.u_ms)
    fem = gather_vertex_array(grids, view.u_h) if view.fem is not None else None
    with collective(grids.comm, OutputError):
        if grids.comm.rank == 0:
            from dolfinx_lod.plotting import plot_fields

            panels = [(f"coefficient a, t = {view.t:.3g}", a, True), ("LOD u_ms", lod, False)]
            if fem is not None:
                panels += [("FEM u_h", fem, False), ("abs(u_ms - u_h)", np.abs(lod - fem), False)]
            log_scale = [True] + [False] * (len(panels) - 1)
            plot_fields(path, panels, grids.domain, log_scale=log_scale)


def boundary_keys(args) -> dict:
    """summary.json's source and boundary data: numbers, or the .npy file names."""

    def shown(value):
        return str(value) if isinstance(value, Path) else value

    return {
        "source": shown(args.source),
        "dirichlet": shown(args.dirichlet) if args.dirichlet is not None else 0.0,
        "flux": dict(args.flux),
    }
