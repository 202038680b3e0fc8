"""The user's own fine mesh T_h (a uniform axis-aligned grid of quadrilaterals or hexahedra of
a box) as nested grids: the coarse mesh T_H is created on top of it."""

from __future__ import annotations

import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.grids import (
    Cells,
    Domain,
    NestedGrids,
    box_mesh,
    cell_counts,
    check_nested,
    check_neumann,
)
from dolfinx_lod.parallel import validate


def nested_grids_from_mesh(
    fine_mesh: dolfinx.mesh.Mesh, coarse: Cells, neumann: str | tuple[str, ...] = ()
) -> NestedGrids:
    """Wrap a user's fine mesh T_h (a uniform n_x x n_y [x n_z] grid of quadrilaterals or
    hexahedra of a box) and create the coarse mesh T_H with ``coarse`` cells (one number or
    one per direction) on top of it; ``neumann`` as in :func:`create_nested_grids`.
    Collective.
    """
    comm = fine_mesh.comm
    types = {dolfinx.mesh.CellType.quadrilateral: 2, dolfinx.mesh.CellType.hexahedron: 3}

    def check_type() -> None:
        if fine_mesh.topology.cell_type not in types:
            raise ValueError(
                f"fine mesh must be quadrilateral or hexahedral, got cell type "
                f"{fine_mesh.topology.cell_type.name}; create it with "
                "dolfinx.mesh.create_rectangle / create_box(..., cell_type=CellType."
                "quadrilateral / hexahedron)"
            )

    validate(comm, check_type)
    dim = types[fine_mesh.topology.cell_type]
    x = fine_mesh.geometry.x[:, :dim]
    lo = x.min(axis=0, initial=np.inf)
    hi = x.max(axis=0, initial=-np.inf)
    comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
    comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
    ncells = fine_mesh.topology.index_map(dim).size_global
    # Cell width along each axis (the smallest positive vertex spacing) gives n_k.
    width = np.array([_min_spacing(x[:, k]) for k in range(dim)])
    comm.Allreduce(MPI.IN_PLACE, width, op=MPI.MIN)
    n = tuple(int(round(v)) for v in (hi - lo) / width)
    domain: Domain = (tuple(map(float, lo)), tuple(map(float, hi)))

    def check_lattice() -> tuple[tuple[int, ...], tuple[str, ...]]:
        if int(np.prod(n)) != ncells:
            raise ValueError(
                f"fine mesh must be a uniform axis-aligned n_x x n_y{' x n_z' if dim == 3 else ''}"
                f" grid; it has {ncells} cells, not {' x '.join(map(str, n))}"
            )
        s = (x - lo) / ((hi - lo) / n)
        if np.abs(s - np.rint(s)).max(initial=0.0) > 1e-8:
            raise ValueError("fine mesh must be a uniform axis-aligned grid")
        NH = cell_counts(coarse, dim, "coarse cells per direction NH")
        check_nested(NH, n)
        return NH, check_neumann(neumann, dim)

    checked: list[tuple[tuple[int, ...], tuple[str, ...]]] = []
    validate(comm, lambda: checked.append(check_lattice()))
    NH, sides = checked[0]
    return NestedGrids(comm, domain, NH, n, box_mesh(comm, domain, NH), fine_mesh, sides)


def _min_spacing(values: npt.NDArray[np.float64]) -> float:
    """Smallest positive gap between distinct ``values`` (inf if fewer than two)."""
    gaps = np.diff(np.unique(values))
    gaps = gaps[gaps > 1e-12 * max(1.0, float(np.abs(values).max(initial=0.0)))]
    return float(gaps.min(initial=np.inf))
